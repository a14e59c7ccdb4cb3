package spool

import "time"

// Stats is what the agent's self-check reports about the spool: how much is
// waiting, for how long, what was lost, and how much room is left.
type Stats struct {
	// Backlog is the number of events held and not yet acknowledged.
	Backlog int
	// Oldest is when the oldest unacknowledged event was appended (its own
	// time for events found at Open); zero when the backlog is empty.
	Oldest time.Time
	// Dropped counts events refused and not yet reported by an
	// events_dropped marker; DroppedDiskFull of them because the file
	// system was full. LastDrop is the newest refusal, reported or not,
	// since Open (or the unreported one found at Open).
	Dropped, DroppedDiskFull uint64
	LastDrop                 time.Time
	// DroppedSinceOpen counts every refusal since Open, reported or not:
	// it only grows, so a reader can tell that a drop happened since it
	// last looked.
	DroppedSinceOpen uint64
	// Bytes is the size of the segments; MaxBytes and MaxRecords the
	// limits in force.
	Bytes      int64
	MaxBytes   int64
	MaxRecords int
	// FreeBytes is the room left on the file system for an unprivileged
	// writer, -1 when it cannot be known on this OS.
	FreeBytes int64
	// ReserveBytes is what the reserve holds; less than its full size
	// means the file system was full and has not had room since.
	ReserveBytes int64
}

// ReserveSize is the size the reserve keeps when it can.
const ReserveSize = reserveSize

// Stats returns the spool's figures. It does not wait for an Append in
// progress (a slow fsync must not hold up the agent's status round).
func (s *Spool) Stats() Stats {
	res := s.res.size.Load()
	s.mu.Lock()
	st := Stats{
		Backlog:          s.live,
		Dropped:          s.drops.count,
		DroppedDiskFull:  s.drops.diskFull,
		DroppedSinceOpen: s.dropsEver,
		Bytes:            s.diskBytes,
		MaxBytes:         s.opt.MaxBytes,
		MaxRecords:       s.opt.MaxRecords,
		ReserveBytes:     res,
	}
	if s.lastDrop != 0 {
		st.LastDrop = time.Unix(0, s.lastDrop)
	}
	for _, seg := range s.segs {
		if seg.first < len(seg.entries) {
			for _, e := range seg.entries[seg.first:] {
				if !e.acked {
					st.Oldest = time.Unix(0, e.at)
					break
				}
			}
			if !st.Oldest.IsZero() {
				break
			}
		}
	}
	s.mu.Unlock()
	st.FreeBytes = freeBytes(s.dir)
	return st
}

// Maintain writes the events_dropped marker if events were refused since
// the last one (from the reserve, when the file system is full), and grows
// the reserve back if it was used and there is room. The agent calls it once
// a round, before it takes the round's batch, so that drops reach the
// server even when nothing is left to acknowledge.
func (s *Spool) Maintain() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	s.maybeMarkLocked()
	s.refillReserve()
}

// SetLimits changes MaxBytes and MaxRecords (0: the default) while the
// spool is open, as the policy says. Lower limits refuse new events until
// acknowledgements make room; nothing held is dropped.
func (s *Spool) SetLimits(maxBytes int64, maxRecords int) error {
	o, err := Options{MaxBytes: maxBytes, MaxRecords: maxRecords}.withDefaults()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opt.MaxBytes != o.MaxBytes || s.opt.MaxRecords != o.MaxRecords {
		s.log.Info("spool: limits changed", "max_bytes", o.MaxBytes, "max_records", o.MaxRecords)
	}
	s.opt.MaxBytes, s.opt.MaxRecords = o.MaxBytes, o.MaxRecords
	s.segMax = segMaxFor(o.MaxBytes)
	return nil
}

// segMaxFor is the size at which a new segment is started.
func segMaxFor(maxBytes int64) int64 { return min(max(maxBytes/16, 16<<10), 4<<20) }
