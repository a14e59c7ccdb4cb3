package regpolicy

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/windows/registry"
)

// Registry is the Store backed by HKLM (64-bit view). Writing needs
// administrator rights (the agent runs as LocalSystem).
type Registry struct{}

// Read returns every managed value that is present. A missing key or value
// is absent, not an error; a value of the wrong type is an error.
func (Registry) Read(ctx context.Context) (State, error) {
	st := State{}
	var errs []error
	for _, v := range Managed() {
		k, err := registry.OpenKey(registry.LOCAL_MACHINE, v.Key, registry.QUERY_VALUE|registry.WOW64_64KEY)
		if errors.Is(err, registry.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("open HKLM\\%s: %w", v.Key, err))
			continue
		}
		n, _, err := k.GetIntegerValue(v.Name)
		k.Close()
		switch {
		case errors.Is(err, registry.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", v, err))
		default:
			st[v] = uint32(n)
		}
	}
	return st, errors.Join(errs...)
}

// Write sets every value in want (as REG_DWORD) and deletes every other
// managed value. It goes on after a failure and reports them all.
func (Registry) Write(ctx context.Context, want State) error {
	var errs []error
	for _, v := range Managed() {
		n, set := want[v]
		if set {
			k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, v.Key, registry.SET_VALUE|registry.WOW64_64KEY)
			if err != nil {
				errs = append(errs, fmt.Errorf("create HKLM\\%s: %w (the agent must run as LocalSystem or an administrator)", v.Key, err))
				continue
			}
			if err := k.SetDWordValue(v.Name, n); err != nil {
				errs = append(errs, fmt.Errorf("set %s: %w", v, err))
			}
			k.Close()
			continue
		}
		k, err := registry.OpenKey(registry.LOCAL_MACHINE, v.Key, registry.SET_VALUE|registry.WOW64_64KEY)
		if errors.Is(err, registry.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("open HKLM\\%s: %w", v.Key, err))
			continue
		}
		if err := k.DeleteValue(v.Name); err != nil && !errors.Is(err, registry.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete %s: %w", v, err))
		}
		k.Close()
	}
	return errors.Join(errs...)
}
