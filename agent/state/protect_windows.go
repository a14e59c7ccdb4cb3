package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

func protect(path string) error {
	if path == "" {
		return errors.New("state directory is not set")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w (run as Administrator)", path, err)
	}
	if err := setDACL(path, StateDirSDDL); err != nil {
		return err
	}
	// Existing contents: explicit SYSTEM/Administrators entries on each,
	// protected, so neither an entry copied from ProgramData by an older
	// install nor one a user added survives. (On Windows the directory's
	// inheritable entries would reach children whose DACL is not
	// protected; an explicit Users entry or a protected child would keep
	// its access. Setting each one is the only way to be sure.)
	var errs []error
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if p == path || d.Type()&fs.ModeSymlink != 0 {
			return nil // the root is done; never follow a link out
		}
		sddl := stateFileSDDL
		if d.IsDir() {
			sddl = StateDirSDDL
		}
		if err := setDACL(p, sddl); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func setDACL(path, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	if dacl == nil { // a nil DACL would grant everyone everything
		return fmt.Errorf("protect %s: no DACL in %q", path, sddl)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("protect %s (SYSTEM and Administrators only): %w", path, err)
	}
	return nil
}
