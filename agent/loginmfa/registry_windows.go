package loginmfa

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows/registry"
)

// WindowsRegistry is CPRegistry on HKLM (64-bit view).
type WindowsRegistry struct{}

// Get reads a REG_SZ value.
func (WindowsRegistry) Get(key, name string) (string, bool, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, key, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf(`open HKLM\%s: %w`, key, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue(name)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf(`read HKLM\%s\%s: %w`, key, name, err)
	}
	return v, true, nil
}

// Set writes a REG_SZ value, creating the key.
func (WindowsRegistry) Set(key, name, value string) error {
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, key, registry.SET_VALUE|registry.WOW64_64KEY)
	if err != nil {
		return fmt.Errorf(`create HKLM\%s: %w`, key, err)
	}
	defer k.Close()
	if err := k.SetStringValue(name, value); err != nil {
		return fmt.Errorf(`write HKLM\%s\%s: %w`, key, name, err)
	}
	return nil
}

// DeleteKey removes a key without subkeys; a missing key is not an error.
func (WindowsRegistry) DeleteKey(key string) error {
	err := registry.DeleteKey(registry.LOCAL_MACHINE, key)
	if err != nil && !errors.Is(err, registry.ErrNotExist) {
		return fmt.Errorf(`delete HKLM\%s: %w`, key, err)
	}
	return nil
}

// MSISHA256 reads the DLL's SHA-256 the MSI recorded
// (HKLM\SOFTWARE\mamori\CredentialProviderSHA256).
func MSISHA256() (string, error) {
	v, ok, err := WindowsRegistry{}.Get(`SOFTWARE\mamori`, "CredentialProviderSHA256")
	if err == nil && !ok {
		err = errors.New(`HKLM\SOFTWARE\mamori\CredentialProviderSHA256 is not set (an MSI without the credential provider?)`)
	}
	return v, err
}
