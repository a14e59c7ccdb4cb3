package mfa

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes an exclusive lock on path with LockFileEx; mamori-cp.dll
// (agent/credprov) takes the same lock on the same file before it consumes
// a break-glass code.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	ov := new(windows.Overlapped)
	if err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, ov); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the handle releases the lock
}

// mfaDirSDDL: protected DACL (no entries inherited from ProgramData, where
// Users may read), full control for SYSTEM and Administrators, inherited
// by every file and directory created inside. mamori-cp.dll trusts the
// break-glass file only when its DACL grants no one else.
const mfaDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// protectDir sets mfaDirSDDL on dir and, through inheritance, on what is
// already inside.
func protectDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(mfaDirSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("protect %s (SYSTEM and Administrators only): %w", dir, err)
	}
	return nil
}
