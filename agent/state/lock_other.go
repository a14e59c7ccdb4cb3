//go:build !unix && !windows

package state

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

func lockFile(*os.File) error { return errors.ErrUnsupported }
