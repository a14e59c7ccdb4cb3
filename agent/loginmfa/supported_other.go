//go:build !linux

package loginmfa

// platformSupported: no PAM here. On Windows the control is supported when
// a credential provider is wired in (Options.CredProv); elsewhere mamori
// does not run.
const platformSupported = false
