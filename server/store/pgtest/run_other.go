//go:build !linux

package pgtest

import (
	"errors"
	"fmt"
	"os/exec"
)

// runAs is Linux-only: the throwaway server uses the Debian binaries.
func runAs(dir, data, sock string) (func(*exec.Cmd), error) {
	return nil, fmt.Errorf("pgtest: %w", errors.ErrUnsupported)
}
