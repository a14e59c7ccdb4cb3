package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/windowstpm"
)

func openPlatform() (transport.TPMCloser, error) {
	t, err := windowstpm.Open()
	if err != nil {
		return nil, fmt.Errorf("%w (TBS: %v)", ErrNoTPM, err)
	}
	return t, nil
}
