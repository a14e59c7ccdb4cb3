package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// The reserve is a file of zeros the spool keeps beside its segments so
// that a full file system cannot take from it what it needs to stay
// truthful: the drop counter, the ack journal (without which acknowledged
// events are sent again and again and delivery stalls), the events_dropped
// marker and a journal compaction. When one of those writes fails with
// ENOSPC (or EDQUOT), the spool gives back part of the reserve and tries
// once more; it grows the reserve back whenever space returns (after an
// Ack deleted segments, and at Open).
//
// Events from the controls never use the reserve: when the file system is
// full they are refused, counted by control and kind, and reported by the
// events_dropped marker, which the reserve guarantees room for.
//
// The file is written, not fallocated or left sparse, so that its blocks
// are really taken on every file system and every OS; 64 KiB is written
// once at Open and costs nothing after.
const (
	reserveName = "reserve"
	// reserveSize holds about 1,500 acknowledged ids, or the drop counter,
	// a marker and a compacted journal with room to spare.
	reserveSize = 64 << 10
	// reserveStep is what one failed write takes from the reserve at
	// least: a page, so that the file system really has a free block.
	reserveStep = 4 << 10
	// reserveFloorForEvents: AppendReserved may spend the reserve down to this,
	// so that logins recorded on a full disk cannot starve the ack journal
	// (which would bring back the resend-forever stall).
	reserveFloorForEvents = reserveSize / 2
)

// isNoSpace reports whether err says the file system (or the user's quota)
// is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || isNoSpaceOS(err)
}

// reserve is the spool's reserve file. Its methods are called with wmu
// held; size may be read without it (Stats).
type reserve struct {
	path string
	size atomic.Int64 // bytes the file holds now
}

// fill grows the reserve to reserveSize, as far as the file system lets it,
// and fsyncs it. A reserve that cannot be filled is not an error: the spool
// works without it and says so in its stats.
func (r *reserve) fill() error {
	if r.size.Load() >= reserveSize {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open spool reserve: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open spool reserve: %w", err)
	}
	size := min(st.Size(), reserveSize)
	zeros := make([]byte, reserveStep)
	var werr error
	for size < reserveSize {
		n := min(int64(len(zeros)), reserveSize-size)
		if _, werr = f.WriteAt(zeros[:n], size); werr != nil {
			break
		}
		size += n
	}
	// Keep only whole, written blocks; a short write may have left a partial
	// one that the next fill completes.
	if err := f.Truncate(size); err != nil && werr == nil {
		werr = err
	}
	if err := f.Sync(); err != nil && werr == nil {
		werr = err
	}
	r.size.Store(size)
	if werr != nil {
		return fmt.Errorf("fill spool reserve (%d of %d bytes): %w", size, reserveSize, werr)
	}
	return nil
}

// release gives back at least need bytes (a whole number of pages) of the
// reserve to the file system, keeping at least floor, and reports whether
// it gave back anything.
func (r *reserve) release(need, floor int64) bool {
	need = (need + reserveStep - 1) / reserveStep * reserveStep
	cur := r.size.Load()
	size := max(cur-max(need, reserveStep), 0)
	if cur <= 0 || size < floor {
		return false
	}
	f, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		// Removing the file gives everything back.
		if rerr := os.Remove(r.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return false
		}
		r.size.Store(0)
		return true
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return false
	}
	// On a journaling file system the freed blocks are reusable once the
	// truncation is committed.
	f.Sync() //nolint:errcheck // the space is back either way once committed
	r.size.Store(size)
	return true
}

// withReserve runs write; if it fails because the file system is full, it
// gives back part of the reserve (need bytes, at least a page) and runs it
// once more.
func (s *Spool) withReserve(need int64, write func() error) error {
	return s.withReserveAbove(need, 0, write)
}

// withReserveAbove is withReserve that leaves at least floor bytes in the
// reserve: what the spool's own bookkeeping needs is not spent on events.
func (s *Spool) withReserveAbove(need, floor int64, write func() error) error {
	err := write()
	if err == nil || !isNoSpace(err) {
		return err
	}
	if !s.res.release(need, floor) {
		return err
	}
	s.log.Warn("spool: file system full; using the reserve", "reserve_left", s.res.size.Load(), "err", err)
	return write()
}

// refillReserve grows the reserve back after it was used, when space may
// have returned. The caller holds wmu.
func (s *Spool) refillReserve() {
	if s.res.size.Load() >= reserveSize {
		return
	}
	if err := s.res.fill(); err != nil {
		s.log.Debug("spool: reserve not yet refilled", "err", err)
		return
	}
	s.log.Info("spool: reserve refilled", "bytes", s.res.size.Load())
}

func reservePath(dir string) string { return filepath.Join(dir, reserveName) }
