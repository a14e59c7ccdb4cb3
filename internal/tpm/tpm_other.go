//go:build !linux && !windows

package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

func openPlatform() (transport.TPMCloser, error) {
	return nil, fmt.Errorf("%w: %w", ErrNoTPM, errors.ErrUnsupported)
}
