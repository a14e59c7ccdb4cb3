//go:build !unix && !windows

package mfa

// lockFile is a no-op where no module shares the file.
func lockFile(string) (func(), error) { return func() {}, nil }

// protectDir has nothing to do here.
func protectDir(string) error { return nil }
