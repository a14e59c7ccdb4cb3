package config

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// readRegistry reads the MSI's values from HKLM\SOFTWARE\mamori (64-bit
// view). A missing key or value is an empty layer, not an error.
//
// The key holds the enrolment token. wixl cannot set ACLs, so the key
// starts with HKLM\SOFTWARE's inherited ACL (Users may read). When the
// process may (the service runs as LocalSystem), readRegistry narrows it
// to SYSTEM and Administrators, not inherited; the first service start
// right after installation does that. Failing to narrow it is not an
// error: an unprivileged `mamori-agent status` must still work.
func readRegistry() (map[string]string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, RegistryKey, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry HKLM\\%s: %w (run as an administrator)", RegistryKey, err)
	}
	defer k.Close()
	out := map[string]string{}
	for _, name := range []string{RegistryServer, RegistryToken, RegistryCAFingerprint} {
		v, _, err := k.GetStringValue(name)
		switch {
		case errors.Is(err, registry.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("registry HKLM\\%s\\%s: %w (it must be a string)", RegistryKey, name, err)
		default:
			out[name] = v
		}
	}
	_ = ProtectRegistryKey() // best effort, see above
	return out, nil
}

// registryKeySDDL: protected DACL (P), inheritable full control for
// LocalSystem (SY) and Administrators (BA), nobody else.
const registryKeySDDL = "D:P(A;OICI;KA;;;SY)(A;OICI;KA;;;BA)"

// ProtectRegistryKey sets HKLM\SOFTWARE\mamori's DACL to SYSTEM and
// Administrators only, so users cannot read the enrolment token. It needs
// administrator rights (WRITE_DAC).
func ProtectRegistryKey() error {
	sd, err := windows.SecurityDescriptorFromString(registryKeySDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	err = windows.SetNamedSecurityInfo(`MACHINE\`+RegistryKey, windows.SE_REGISTRY_KEY,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("protect HKLM\\%s: %w", RegistryKey, err)
	}
	return nil
}

// forgetRegistryToken deletes the MSI's Token value once the terminal is
// enrolled (ForgetToken). The Server and CAFingerprint values stay.
func forgetRegistryToken() error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, RegistryKey, registry.SET_VALUE|registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forget token in HKLM\\%s: %w", RegistryKey, err)
	}
	defer k.Close()
	if err := k.DeleteValue(RegistryToken); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return fmt.Errorf("forget token in HKLM\\%s\\%s: %w", RegistryKey, RegistryToken, err)
	}
	return nil
}
