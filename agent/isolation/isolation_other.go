//go:build !linux && !windows

package isolation

import (
	"errors"
	"fmt"
)

func newSystem(o Options) (system, error) {
	return nil, fmt.Errorf("the isolation control: %w on this operating system", errors.ErrUnsupported)
}
