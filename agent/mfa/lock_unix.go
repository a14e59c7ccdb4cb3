//go:build unix

package mfa

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path (pam_mamori.so takes the same).
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// protectDir: the 0700 mode already is the protection.
func protectDir(string) error { return nil }
