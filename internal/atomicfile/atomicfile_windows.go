package atomicfile

import "os"

// SyncDir is a no-op on Windows: NTFS makes a completed rename durable with
// the file's own flush, and directories cannot be opened for fsync.
func SyncDir(dir string) error { return nil }

// CheckPrivate only checks that the file exists on Windows. The installer
// sets an ACL on the state directory (SYSTEM and Administrators only);
// mode bits mean nothing there.
func CheckPrivate(path string) error {
	_, err := os.Stat(path)
	return err
}
