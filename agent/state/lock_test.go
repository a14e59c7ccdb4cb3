package state

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l, err := LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A second lock (another open file description, as another process
	// would have) is refused and names the holder.
	_, err = LockRun(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockRun(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
	l2.Release() // twice is harmless

	// A lock file with garbage in it (no live holder) is just taken.
	os.WriteFile(filepath.Join(dir, RunLockFile), []byte(strings.Repeat("x", 1<<16)), 0o600)
	l3, err := LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockRun(dir)
	if !errors.Is(err, ErrLocked) || len(err.Error()) > 400 {
		t.Fatalf("lock held over a garbage file: %v", err)
	}
	l3.Release()
}
