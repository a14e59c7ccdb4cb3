package facts

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows/registry"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func collect(ctx context.Context, o Options) (*mamoriv1.DeviceFacts, error) {
	f := &mamoriv1.DeviceFacts{Os: "windows"}
	var errs []error
	if h, err := os.Hostname(); err == nil {
		f.Hostname = h
	} else {
		errs = append(errs, fmt.Errorf("hostname: %w", err))
	}

	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Cryptography`, registry.QUERY_VALUE|registry.WOW64_64KEY); err == nil {
		if v, _, err := k.GetStringValue("MachineGuid"); err == nil {
			f.MachineId = v
		}
		k.Close()
	}
	if f.MachineId == "" {
		errs = append(errs, fmt.Errorf("%w: HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid is unreadable", ErrNoMachineID))
	}

	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Windows NT\CurrentVersion`, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		errs = append(errs, fmt.Errorf("windows version: %w", err))
	} else {
		product, _, _ := k.GetStringValue("ProductName")
		display, _, _ := k.GetStringValue("DisplayVersion")
		build, _, _ := k.GetStringValue("CurrentBuild")
		ubr, _, _ := k.GetIntegerValue("UBR")
		k.Close()
		f.OsVersion, f.Kernel = WindowsVersion(product, display, build, ubr)
	}

	// A TPM 2.0 enumerates as the ACPI device MSFT0101.
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Enum\ACPI\MSFT0101`, registry.ENUMERATE_SUB_KEYS); err == nil {
		f.TpmPresent = true
		k.Close()
	}
	return f, errors.Join(errs...)
}
