//go:build !linux && !windows

package facts

import (
	"context"
	"errors"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func collect(ctx context.Context, o Options) (*mamoriv1.DeviceFacts, error) {
	return nil, errors.ErrUnsupported
}
