//go:build !linux

package loginmfa

// platformSupported: on Windows a credential provider would be needed
// (not written yet); elsewhere mamori does not run.
const platformSupported = false
