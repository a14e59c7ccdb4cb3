//go:build !windows

package state

import (
	"errors"
	"fmt"
	"os"
)

// protect: the 0700 directory and 0600 key file are the protection.
func protect(path string) error {
	if path == "" {
		return errors.New("state directory is not set")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w (run as root)", path, err)
	}
	return nil
}
