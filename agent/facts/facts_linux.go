package facts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// maxFileBytes bounds what is read from any one file.
const maxFileBytes = 64 << 10

func collect(ctx context.Context, o Options) (*mamoriv1.DeviceFacts, error) {
	root := o.Root
	if root == "" {
		root = "/"
	}
	f := &mamoriv1.DeviceFacts{Os: "linux"}
	var errs []error

	if b, err := readFile(root, "proc/sys/kernel/hostname"); err == nil {
		f.Hostname = string(b)
	} else if h, herr := os.Hostname(); herr == nil && root == "/" {
		f.Hostname = h
	} else {
		errs = append(errs, fmt.Errorf("hostname: %w", err))
	}

	rel, err := readFile(root, "etc/os-release")
	if errors.Is(err, os.ErrNotExist) {
		rel, err = readFile(root, "usr/lib/os-release")
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("os-release: %w", err))
	}
	f.OsVersion = OSVersion(ParseOSRelease(rel))

	if b, err := readFile(root, "proc/sys/kernel/osrelease"); err == nil {
		f.Kernel = string(b)
	} else {
		errs = append(errs, fmt.Errorf("kernel release: %w", err))
	}

	var idErrs []error
	for _, p := range []string{"etc/machine-id", "var/lib/dbus/machine-id"} {
		b, err := readFile(root, p)
		if err == nil {
			var id string
			if id, err = ParseMachineID(b); err == nil {
				f.MachineId = id
				break
			}
		}
		idErrs = append(idErrs, fmt.Errorf("/%s: %w", p, err))
	}
	if f.MachineId == "" {
		errs = append(errs, fmt.Errorf("%w: %w", ErrNoMachineID, errors.Join(idErrs...)))
	}

	// SMBIOS system serial; readable by root only, absent in many VMs.
	if b, err := readFile(root, "sys/class/dmi/id/product_serial"); err == nil {
		f.SerialNumber = ParseSerial(b)
	}

	// Who administers the terminal: a temporary code for one of them is a
	// privileged one on the server.
	if pw, err := readFile(root, "etc/passwd"); err == nil {
		gr, _ := readFile(root, "etc/group")
		f.PrivilegedUsers = PrivilegedUsers(pw, gr)
	}

	// The kernel's resource manager device exists when a TPM 2.0 is present.
	if _, err := os.Lstat(filepath.Join(root, "dev", "tpmrm0")); err == nil {
		f.TpmPresent = true
	}
	return f, errors.Join(errs...)
}

func readFile(root, rel string) ([]byte, error) {
	fh, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxFileBytes))
}
