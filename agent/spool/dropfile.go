package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// The drop counter lives in its own file of two fixed slots, written in
// turn and fsync'd, so that counting a refused event never needs new space:
// the file is made once, full size, and then only overwritten. That is what
// lets the spool count every event a full file system refuses (an append-only
// journal would itself run out). A write torn by a crash damages only the
// slot being written; the other holds the previous count.
//
// Each slot holds one checksummed drops frame (and after it, zeros or the
// rest of an older one, which is not read). The newer
// slot is the one with the larger (generation, count): within a generation
// the count only grows, and a new generation starts at zero.
//
// Spools written before this file existed kept drop snapshots in meta.log;
// Open still reads them and takes the newest of both.
const (
	dropsName     = "drops"
	dropsSlotSize = 8 << 10 // a snapshot is bounded well below this (TestDropStateBounded)
)

// newerDrops reports whether a is a later snapshot than b.
func newerDrops(a, b dropState) bool {
	return a.gen > b.gen || a.gen == b.gen && a.count > b.count
}

// dropFile is the two-slot counter file. Its methods are called with wmu
// held.
type dropFile struct {
	path string
	f    *os.File
	next int // slot to write next
}

// load reads the newer valid slot. ok is false when neither holds one.
func (d *dropFile) load() (ds dropState, ok bool, err error) {
	data, err := os.ReadFile(d.path)
	if err != nil {
		if os.IsNotExist(err) {
			return dropState{}, false, nil
		}
		return dropState{}, false, fmt.Errorf("read spool drop counter: %w", err)
	}
	for slot := range 2 {
		off := slot * dropsSlotSize
		if off >= len(data) {
			break
		}
		end := min(off+dropsSlotSize, len(data))
		r, good := frameAt(data[off:end], 0)
		if !good || r.typ != recDrops {
			continue // never written, or torn by a crash: the other slot holds the count
		}
		if !ok || newerDrops(r.drops, ds) {
			ds, ok = r.drops, true
			d.next = 1 - slot
		}
	}
	return ds, ok, nil
}

// open makes the file full size if it is not.
func (d *dropFile) open() error {
	if d.f != nil {
		return nil
	}
	f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open spool drop counter: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < 2*dropsSlotSize {
		zeros := make([]byte, 2*dropsSlotSize-st.Size())
		if _, err = f.WriteAt(zeros, st.Size()); err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Truncate(st.Size()) //nolint:errcheck // best effort: a short file is made full size next time
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("make spool drop counter: %w", err)
	}
	d.f = f
	return nil
}

// write stores ds in the older slot and fsyncs.
func (d *dropFile) write(ds dropState) error {
	if err := d.open(); err != nil {
		return err
	}
	frame := encodeDrops(ds)
	if len(frame) > dropsSlotSize {
		return fmt.Errorf("spool drop counter: snapshot of %d bytes exceeds its slot", len(frame)) // bounded by dropState.add; never seen
	}
	// Only the frame: whatever an older, longer snapshot left after it in
	// the slot is not read (the frame carries its length and checksum).
	if _, err := d.f.WriteAt(frame, int64(d.next*dropsSlotSize)); err != nil {
		return fmt.Errorf("write spool drop counter: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync spool drop counter: %w", err)
	}
	d.next = 1 - d.next
	return nil
}

func (d *dropFile) close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

func newDropFile(dir string) dropFile {
	return dropFile{path: filepath.Join(dir, dropsName)}
}
