package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrLocked is a run lock another live process holds.
var ErrLocked = errors.New("another mamori-agent is running with this state directory")

// RunLockFile is the lock file's name inside the state directory.
const RunLockFile = "agent.lock"

// RunLock is the state directory's run lock: one `mamori-agent run` per
// state directory. The operating system drops it when the process ends,
// however it ends, so a crash never leaves a stale lock.
type RunLock struct{ f *os.File }

// LockRun takes the run lock of the state directory at path without
// waiting: an error wrapping ErrLocked (with the holder's pid) when
// another live process holds it.
func LockRun(path string) (*RunLock, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", path, err)
	}
	p := filepath.Join(path, RunLockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			b, _ := os.ReadFile(p)
			pid := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(pid); perr != nil || len(pid) > 10 {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w (pid %s, lock %s): stop it first (systemctl stop mamori-agent)", ErrLocked, pid, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// The pid is for the message above only; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &RunLock{f: f}, nil
}

// Release drops the lock.
func (l *RunLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the lock
	l.f = nil
	return err
}
