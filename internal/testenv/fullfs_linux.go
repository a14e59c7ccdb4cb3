package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TmpFS mounts a tmpfs of size bytes ("256k", "1m") on a new temporary
// directory for t's duration and returns it: a small file system a test
// can fill. It needs root.
func TmpFS(t testing.TB, size string) string {
	t.Helper()
	RequireRoot(t)
	mount := LookPath(t, "mount", "mount")
	mnt := t.TempDir()
	if out, err := exec.Command(mount, "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		Unavailable(t, fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// FillFS writes a file in dir until the file system is full, as another
// program would, down to the last byte, and returns its path.
func FillFS(t testing.TB, dir string) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			return filler
		}
	}
}
