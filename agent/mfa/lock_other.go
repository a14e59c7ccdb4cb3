//go:build !unix

package mfa

// lockFile is a no-op where no PAM module shares the file (Windows).
func lockFile(string) (func(), error) { return func() {}, nil }
