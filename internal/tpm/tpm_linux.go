package tpm

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DevicePath is the kernel's TPM resource manager.
const DevicePath = "/dev/tpmrm0"

func openPlatform() (transport.TPMCloser, error) {
	t, err := linuxtpm.Open(DevicePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w (%s does not exist)", ErrNoTPM, DevicePath)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("open %s: %w (run as root or join group tss)", DevicePath, err)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	return t, nil
}
