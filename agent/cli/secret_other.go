//go:build !linux && !windows

package cli

import (
	"errors"
	"os"
)

func echoOff(*os.File) (func(), error) { return nil, errors.ErrUnsupported }
