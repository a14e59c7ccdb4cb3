//go:build !windows

package regpolicy

import (
	"context"
	"errors"
)

// Registry is the Store backed by HKLM; it exists only on Windows.
type Registry struct{}

// Read returns errors.ErrUnsupported off Windows.
func (Registry) Read(context.Context) (State, error) { return nil, errors.ErrUnsupported }

// Write returns errors.ErrUnsupported off Windows.
func (Registry) Write(context.Context, State) error { return errors.ErrUnsupported }
