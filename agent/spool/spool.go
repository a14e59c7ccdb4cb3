// Package spool is the agent's durable event queue: events are written to
// disk and fsync'd before Append returns, sent to the server in batches by
// the caller, and deleted only after the server acknowledged their ids.
//
// # On-disk format
//
// The spool directory (mode 0700) holds:
//
//   - seg-<16 hex digits>.log: segment files, numbered in append order. A
//     segment is a sequence of frames. Each Append call (or group of
//     concurrent calls) writes one batch frame per call and fsyncs once.
//     A new segment is started at Open and when the current one exceeds
//     MaxBytes/16 (between 16 KiB and 4 MiB). A segment whose events are
//     all acknowledged is deleted.
//   - meta.log: the journal of ack frames (ids the server acknowledged) and
//     drop counter snapshots. When it grows it is rewritten (write to a
//     temporary file, fsync, rename) keeping only the acks that still refer
//     to events on disk and the latest drop snapshot.
//   - *.corrupt: damaged files kept for forensics (see Corruption).
//   - Anything else is ignored.
//
// A frame is: the magic "MSp1", a 4-byte little-endian payload length, a
// 4-byte CRC-32C of the length field and the payload, and the payload. The
// payload is a type byte and uvarint-prefixed fields: a batch holds
// protobuf-encoded mamoriv1.Event messages; an ack holds id strings; a drop
// snapshot holds the counter.
//
// # Guarantees
//
//   - When Append returns nil its events are fsync'd; the whole call is one
//     checksummed frame, so after a crash either all of its events are there
//     or none.
//   - When Ack returns nil the acknowledged events never come back: either
//     their segment was deleted (and the directory fsync'd) or an ack frame
//     naming them was fsync'd.
//   - Delivery is at least once: an Append that returned an error may still
//     have reached the disk (for example when fsync failed after the write),
//     and a crash during Ack may bring back events whose Ack did not return.
//     The server deduplicates by event id. Event ids are expected to be
//     unique; acknowledging an id acknowledges every event carrying it.
//   - MaxBytes bounds the segment files. When an Append would exceed
//     MaxBytes or MaxRecords (less a small reserve for the spool's own
//     events), none of its events are written, Append returns ErrFull, and
//     a drop counter (count, first and last time, count by control) is
//     fsync'd to meta.log. Once there is room, the spool appends an event
//     {control: "agent", kind: "events_dropped"} that reports the counter;
//     that frame carries the counter's generation, so a crash between
//     writing the marker and resetting the counter neither loses nor
//     doubles the report.
//   - meta.log is not counted against MaxBytes; it is compacted once it
//     exceeds 64 KiB and four times what it must keep (about 40 bytes per
//     acknowledged event still inside a live segment), and whenever no
//     segment is left.
//   - An Ack that deletes no whole segment needs a few bytes of journal;
//     on a completely full disk it fails and can be retried.
//   - Only one process may use a directory at a time (not enforced).
//
// # Corruption
//
// Open never fails because of what is in the files. A torn tail (bytes
// after the last good frame that are a partial header, start with the magic,
// or are zeros) is the normal result of a crash during Append; it is
// truncated and logged. Other unreadable bytes are damage: the decoder skips
// to the next good frame, the file is hard-linked (or copied) to
// <name>.corrupt, a {control: "agent", kind: "spool_damaged"} event with
// the file name, damaged byte count and an estimate of the records lost is
// appended, and the file is rewritten with its good frames only. Corrupt
// copies do not count against MaxBytes; at most 8 are kept, and no more
// than MaxBytes in total, oldest removed first. A torn group write whose
// later blocks reached the disk but middle blocks did not (power loss) is
// reported as damage too: over-reporting, never silent loss. Damage to
// meta.log loses acks (those events are sent again) or the drop counter
// (reported in the damage event). Damage that appears while the spool is
// open makes Pending fail with an error until the spool is reopened, which
// repairs and reports it.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// ErrEventTooLarge is returned by Append, and nothing is written, when an
// event encodes to more than MaxEventBytes (64 KiB).
var ErrEventTooLarge = errors.New("event larger than 64 KiB")

// ErrFull is returned by Append when the call's events would exceed
// MaxBytes or MaxRecords, or the file system under the spool is full (the
// error then also wraps the ENOSPC or EDQUOT). None of them were written;
// they were counted, and an events_dropped event will report them once
// there is room again.
var ErrFull = errors.New("spool full: events dropped and counted")

// ErrClosed is returned by calls on a closed Spool.
var ErrClosed = errors.New("spool closed")

const (
	defaultMaxBytes   = 64 << 20
	defaultMaxRecords = 100_000
	minMaxBytes       = 128 << 10
	minMaxRecords     = 16

	// The spool's own events (events_dropped, spool_damaged) may use this
	// much room beyond what Append may use, so the marker always fits.
	reserveBytes   = 16 << 10
	reserveRecords = 4

	maxCorruptFiles = 8
	minMetaCompact  = 64 << 10

	metaName      = "meta.log"
	segPrefix     = "seg-"
	segSuffix     = ".log"
	corruptSuffix = ".corrupt"

	// AgentControl is the control of the events the spool makes itself.
	AgentControl = "agent"
	// KindEventsDropped is the kind of the event that reports drops.
	KindEventsDropped = "events_dropped"
	// KindSpoolDamaged is the kind of the event that reports damage.
	KindSpoolDamaged = "spool_damaged"
)

// Options configure a Spool. The zero value is usable.
type Options struct {
	MaxBytes   int64            // bound on spool size on disk; 0 → 64 MiB, at least 128 KiB
	MaxRecords int              // bound on events held; 0 → 100_000, at least 16
	Now        func() time.Time // nil → time.Now
	NewID      func() string    // nil → random UUIDv4; ids of the spool's own events
	Logger     *slog.Logger     // nil → discard
}

// Spool is a durable, bounded event queue in one directory. It is safe for
// concurrent use.
type Spool struct {
	dir    string
	opt    Options
	log    *slog.Logger
	segMax int64

	// wmu serialises disk writes: segment flushes, meta.log, deletions.
	// Lock order: wmu before mu.
	wmu sync.Mutex
	mu  sync.Mutex

	closed       bool
	segs         []*segment // oldest first; the active one is last
	active       *segment   // segment open for writing, or nil
	nextSeq      uint64
	diskBytes    int64 // sum of segment sizes
	live         int   // events not acked
	byID         map[string][]*entry
	cur          *batch // appends waiting for the next flush
	queuedBytes  int64
	queuedEvents int

	meta      *os.File
	metaSize  int64
	drops     dropState
	dropDirty bool // drops not yet persisted in meta.log

	lastDrop  int64    // unix ns of the newest refusal; guarded by mu
	dropsEver uint64   // refusals since Open; guarded by mu
	res       reserve  // guarded by wmu
	dropFile  dropFile // guarded by wmu
}

type segment struct {
	seq     uint64
	path    string
	size    int64
	f       *os.File // only while active
	entries []*entry // in append order
	live    int
	first   int  // entries before first are acked
	removed bool // file deleted
}

type entry struct {
	id     string
	seg    *segment
	recOff int64 // frame start
	recLen int
	evOff  int // event bytes within the frame
	evLen  int
	acked  bool
	at     int64 // unix ns: when appended, or the event's own time if loaded at Open
}

type batch struct {
	buf     []byte
	recs    []pendingRec
	nEvents int
	done    bool
	err     error
}

type pendingRec struct {
	off       int // in batch.buf
	n         int
	clearsGen uint64
	ids       []string
	spans     []span // relative to the frame
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.MaxRecords == 0 {
		o.MaxRecords = defaultMaxRecords
	}
	if o.MaxBytes < minMaxBytes {
		return o, fmt.Errorf("spool MaxBytes %d is below the minimum %d", o.MaxBytes, minMaxBytes)
	}
	if o.MaxRecords < minMaxRecords {
		return o, fmt.Errorf("spool MaxRecords %d is below the minimum %d", o.MaxRecords, minMaxRecords)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewID == nil {
		o.NewID = uuid.NewString
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Append writes evs durably as one unit: when it returns nil all of them are
// fsync'd; after a crash either all or none are in the spool. Concurrent
// calls share one fsync. ctx is checked before anything is written; once
// queued, the write is not abandoned. Every event needs an id.
//
// An event larger than MaxEventBytes fails the call with ErrEventTooLarge.
// If the events do not fit, the call returns ErrFull and the events are
// counted as dropped.
func (s *Spool) Append(ctx context.Context, evs ...*mamoriv1.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool append: %w", err)
	}
	if len(evs) == 0 {
		return nil
	}
	frame, spans, ids, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	b, err := s.enqueue(frame, pendingRec{ids: ids, spans: spans}, false)
	if errors.Is(err, ErrFull) {
		return s.recordDrop(evs, nil)
	}
	if err != nil {
		return err
	}
	s.wmu.Lock()
	if !b.done {
		s.flushLocked()
	}
	err = b.err
	s.wmu.Unlock()
	if err != nil && isNoSpace(err) {
		// Nothing of the batch is on disk (writeBatch cut it back): the
		// events are lost unless counted.
		return s.recordDrop(evs, err)
	}
	return err
}

// encodeEvents checks and encodes evs as one batch frame.
func encodeEvents(evs []*mamoriv1.Event) (frame []byte, spans []span, ids []string, err error) {
	enc := make([][]byte, len(evs))
	ids = make([]string, len(evs))
	for i, ev := range evs {
		if ev == nil {
			return nil, nil, nil, fmt.Errorf("spool append: event %d is nil", i)
		}
		if ev.GetId() == "" {
			return nil, nil, nil, fmt.Errorf("spool append: event %d (%s/%s) has no id", i, ev.GetControl(), ev.GetKind())
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("spool append: encode event %s: %w", ev.GetId(), err)
		}
		if len(b) > MaxEventBytes {
			return nil, nil, nil, fmt.Errorf("spool append: event %s is %d bytes: %w", ev.GetId(), len(b), ErrEventTooLarge)
		}
		enc[i], ids[i] = b, ev.GetId()
	}
	frame, spans = encodeBatch(0, enc)
	return frame, spans, ids, nil
}

// AppendReserved is Append for events that must not be lost to a full
// disk (a login's record: agent/mfa refuses the login otherwise). They may
// use the spool's reserve, in records and on disk; when even that is gone,
// the call fails like Append and the events are counted.
func (s *Spool) AppendReserved(ctx context.Context, evs ...*mamoriv1.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool append: %w", err)
	}
	if len(evs) == 0 {
		return nil
	}
	frame, spans, ids, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	err = s.withReserveAbove(int64(len(frame)), reserveFloorForEvents, func() error {
		b, err := s.enqueue(frame, pendingRec{ids: ids, spans: spans}, true)
		if err != nil {
			return err
		}
		if !b.done {
			s.flushLocked()
		}
		return b.err
	})
	s.wmu.Unlock()
	switch {
	case errors.Is(err, ErrFull):
		return s.recordDrop(evs, nil)
	case err != nil && isNoSpace(err):
		return s.recordDrop(evs, err)
	}
	return err
}

// enqueue adds a frame to the batch of the next flush, or returns ErrFull.
// internal events may use the reserve.
func (s *Spool) enqueue(frame []byte, rec pendingRec, internal bool) (*batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	maxBytes, maxRecs := s.opt.MaxBytes-reserveBytes, s.opt.MaxRecords-reserveRecords
	if internal {
		maxBytes, maxRecs = s.opt.MaxBytes, s.opt.MaxRecords
	}
	if s.diskBytes+s.queuedBytes+int64(len(frame)) > maxBytes || s.live+s.queuedEvents+len(rec.ids) > maxRecs {
		return nil, ErrFull
	}
	if s.cur == nil {
		s.cur = &batch{}
	}
	b := s.cur
	rec.off, rec.n = len(b.buf), len(frame)
	b.buf = append(b.buf, frame...)
	b.recs = append(b.recs, rec)
	b.nEvents += len(rec.ids)
	s.queuedBytes += int64(len(frame))
	s.queuedEvents += len(rec.ids)
	return b, nil
}

// flushLocked writes and fsyncs the current batch. The caller holds wmu.
func (s *Spool) flushLocked() {
	s.mu.Lock()
	b := s.cur
	s.cur = nil
	s.mu.Unlock()
	if b == nil {
		return
	}
	seg, off, err := s.writeBatch(b.buf)
	now := s.opt.Now().UnixNano()
	s.mu.Lock()
	s.queuedBytes -= int64(len(b.buf))
	s.queuedEvents -= b.nEvents
	var clears []uint64
	if err == nil {
		for _, r := range b.recs {
			for i, id := range r.ids {
				e := &entry{id: id, seg: seg, recOff: off + int64(r.off), recLen: r.n, evOff: int(r.spans[i].off), evLen: int(r.spans[i].n), at: now}
				s.addEntry(e)
			}
			if r.clearsGen != 0 {
				clears = append(clears, r.clearsGen)
			}
		}
	}
	s.mu.Unlock()
	for _, g := range clears {
		s.clearDrops(g)
	}
	b.done, b.err = true, err
}

func (s *Spool) addEntry(e *entry) {
	e.seg.entries = append(e.seg.entries, e)
	e.seg.live++
	s.live++
	s.byID[e.id] = append(s.byID[e.id], e)
}

// writeBatch appends buf to the active segment and fsyncs it. The caller
// holds wmu. On failure the segment is cut back to its previous size and
// retired, so a half-written frame is never followed by good ones.
func (s *Spool) writeBatch(buf []byte) (*segment, int64, error) {
	s.mu.Lock()
	seg := s.active
	if seg != nil && seg.size >= s.segMax {
		s.retireLocked()
		seg = nil
	}
	s.mu.Unlock()
	if seg == nil {
		var err error
		if seg, err = s.newSegment(); err != nil {
			return nil, 0, err
		}
	}
	off := seg.size
	_, err := seg.f.WriteAt(buf, off)
	if err == nil {
		if err = seg.f.Sync(); err != nil {
			err = fmt.Errorf("fsync spool segment: %w", err)
		}
	} else {
		err = fmt.Errorf("write spool segment: %w", err)
	}
	if err != nil {
		if terr := seg.f.Truncate(off); terr != nil {
			s.log.Error("spool: cannot cut back failed write; the next open will treat the rest as a torn tail", "file", seg.path, "err", terr)
		}
		s.mu.Lock()
		s.retireLocked()
		if off == 0 && len(seg.entries) == 0 {
			// Do not leave an empty segment behind for every failed write.
			if rerr := s.deleteSegmentsLocked(map[*segment]bool{seg: true}); rerr != nil {
				s.log.Warn("spool: remove empty segment", "err", rerr)
			}
		}
		s.mu.Unlock()
		return nil, 0, err
	}
	s.mu.Lock()
	seg.size += int64(len(buf))
	s.diskBytes += int64(len(buf))
	s.mu.Unlock()
	return seg, off, nil
}

// retireLocked closes the active segment; it stays readable. The caller
// holds mu.
func (s *Spool) retireLocked() {
	if s.active == nil {
		return
	}
	if err := s.active.f.Close(); err != nil {
		s.log.Warn("spool: close segment", "file", s.active.path, "err", err)
	}
	s.active.f = nil
	s.active = nil
}

// newSegment creates the next segment and makes it active. The caller holds
// wmu.
func (s *Spool) newSegment() (*segment, error) {
	s.mu.Lock()
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()
	path := filepath.Join(s.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool segment: %w", err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create spool segment: %w", err)
	}
	seg := &segment{seq: seq, path: path, f: f}
	s.mu.Lock()
	s.segs = append(s.segs, seg)
	s.active = seg
	s.mu.Unlock()
	return seg, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%s%016x%s", segPrefix, seq, segSuffix) }

func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, segSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	return v, err == nil
}

// recordDrop durably counts evs as dropped and returns ErrFull (wrapping
// cause, the file system's error, when it was full rather than the spool).
// The counter is written with the reserve's help, so a full file system
// does not lose it.
func (s *Spool) recordDrop(evs []*mamoriv1.Event, cause error) error {
	full := ErrFull
	if cause != nil {
		full = fmt.Errorf("%w: %w", ErrFull, cause)
	}
	now := s.opt.Now()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	for _, ev := range evs {
		s.drops.add(ev.GetControl(), ev.GetKind(), cause != nil, 1, now)
	}
	s.lastDrop = now.UnixNano()
	s.dropsEver += uint64(len(evs))
	d := s.drops
	s.dropDirty = true
	s.mu.Unlock()
	s.log.Warn("spool: events dropped", "events", len(evs), "dropped_total", d.count, "disk_full_total", d.diskFull, "cause", errString(cause))
	if err := s.persistDrops(); err != nil {
		return errors.Join(full, fmt.Errorf("record dropped events: %w", err))
	}
	return full
}

func errString(err error) string {
	if err == nil {
		return "spool limits"
	}
	return err.Error()
}

// persistDrops writes the drop counter to meta.log if it changed since it
// was last written, using the reserve when the file system is full. The
// caller holds wmu but not mu.
func (s *Spool) persistDrops() error {
	s.mu.Lock()
	dirty, d := s.dropDirty, s.drops
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := s.writeDrops(d); err != nil {
		return err
	}
	s.mu.Lock()
	if s.drops.gen == d.gen && s.drops.count == d.count {
		s.dropDirty = false
	}
	s.mu.Unlock()
	return nil
}

// clearDrops starts a new drop generation once the marker reporting gen is
// on disk. The caller holds wmu.
func (s *Spool) clearDrops(gen uint64) {
	s.mu.Lock()
	if s.drops.gen != gen {
		s.mu.Unlock()
		return
	}
	s.drops = dropState{gen: gen + 1}
	d := s.drops
	s.mu.Unlock()
	if err := s.writeDrops(d); err != nil {
		// The marker frame carries gen, so a crash now does not double count;
		// the next meta write retries.
		s.log.Warn("spool: persist drop counter reset", "err", err)
		s.mu.Lock()
		s.dropDirty = true
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.dropDirty = false
	s.mu.Unlock()
}

// writeDrops stores the drop counter in its file (dropfile.go), which needs
// no new space once made; making it may use the reserve. The caller holds
// wmu.
func (s *Spool) writeDrops(d dropState) error {
	return s.withReserve(2*dropsSlotSize, func() error { return s.dropFile.write(d) })
}

// writeMetaReserved is writeMeta that may use the reserve. The caller holds
// wmu.
func (s *Spool) writeMetaReserved(frames []byte) error {
	return s.withReserve(int64(len(frames)), func() error { return s.writeMeta(frames) })
}

// writeMeta appends frames to meta.log and fsyncs. The caller holds wmu.
func (s *Spool) writeMeta(frames []byte) error {
	path := filepath.Join(s.dir, metaName)
	if s.meta == nil {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("open spool journal: %w", err)
		}
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return fmt.Errorf("open spool journal: %w", err)
		}
		if size == 0 {
			if err := atomicfile.SyncDir(s.dir); err != nil {
				f.Close()
				return fmt.Errorf("open spool journal: %w", err)
			}
		}
		s.meta, s.metaSize = f, size
	}
	_, err := s.meta.WriteAt(frames, s.metaSize)
	if err == nil {
		err = s.meta.Sync()
	}
	if err != nil {
		if terr := s.meta.Truncate(s.metaSize); terr != nil {
			s.log.Error("spool: cannot cut back failed journal write", "err", terr)
			s.meta.Close()
			s.meta = nil // reopen at the end next time
		}
		return fmt.Errorf("write spool journal: %w", err)
	}
	s.metaSize += int64(len(frames))
	return nil
}

// Pending returns up to maxEvents events, oldest first, whose protobuf
// encodings total at most maxBytes; it always returns at least one event if
// any is held, however large. A limit ≤ 0 means no limit. The events stay
// in the spool until acknowledged.
func (s *Spool) Pending(maxEvents int, maxBytes int) ([]*mamoriv1.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var (
		out   []*mamoriv1.Event
		total int
		f     *os.File
		fseg  *segment
		frame []byte
		fOff  int64 = -1
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for _, seg := range s.segs {
		for _, e := range seg.entries[seg.first:] {
			if e.acked {
				continue
			}
			if maxEvents > 0 && len(out) >= maxEvents || maxBytes > 0 && len(out) > 0 && total+e.evLen > maxBytes {
				return out, nil
			}
			if fseg != seg {
				if f != nil {
					f.Close()
					f = nil
				}
				var err error
				if f, err = os.Open(seg.path); err != nil {
					return nil, fmt.Errorf("spool pending: %w", err)
				}
				fseg, fOff = seg, -1
			}
			if fOff != e.recOff {
				frame = make([]byte, e.recLen)
				if _, err := f.ReadAt(frame, e.recOff); err != nil {
					return nil, fmt.Errorf("spool pending: read %s at %d: %w", seg.path, e.recOff, err)
				}
				if _, ok := frameAt(frame, 0); !ok {
					return nil, fmt.Errorf("spool pending: %s at %d: checksum mismatch; reopen the spool to recover", seg.path, e.recOff)
				}
				fOff = e.recOff
			}
			ev := &mamoriv1.Event{}
			if err := proto.Unmarshal(frame[e.evOff:e.evOff+e.evLen], ev); err != nil {
				return nil, fmt.Errorf("spool pending: decode %s: %w", e.id, err)
			}
			out = append(out, ev)
			total += e.evLen
		}
	}
	return out, nil
}

// Len returns the number of events held and not yet acknowledged.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live
}

// Ack durably removes the events with the given ids; unknown ids are
// ignored. Segments whose events are all acknowledged are deleted. If events
// were dropped and there is room again, the events_dropped marker is
// appended before Ack returns.
func (s *Spool) Ack(ids []string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.dropDirty {
		// Persist a pending counter reset before deleting a segment that
		// may hold the marker proving it.
		if err := s.writeDrops(s.drops); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("spool ack: %w", err)
		}
		s.dropDirty = false
	}
	var found []*entry
	seenE := map[*entry]bool{}
	gone := map[*segment]int{}
	for _, id := range ids {
		for _, e := range s.byID[id] { // byID holds only unacknowledged entries
			if !seenE[e] {
				seenE[e] = true
				found = append(found, e)
				gone[e.seg]++
			}
		}
	}
	// Segments left with no live event are deleted, which acknowledges
	// their events without a journal entry.
	deleted := map[*segment]bool{}
	for _, seg := range s.segs {
		if seg.live == gone[seg] {
			deleted[seg] = true // includes segments left empty by a failed write
		}
	}
	if err := s.deleteSegmentsLocked(deleted); err != nil {
		s.log.Warn("spool: delete acknowledged segment", "err", err)
	}
	var journal []string
	var toMark []*entry
	seen := map[string]bool{}
	for _, e := range found {
		if e.seg.removed {
			continue
		}
		toMark = append(toMark, e)
		if !seen[e.id] {
			seen[e.id] = true
			journal = append(journal, e.id)
		}
	}
	if len(journal) > 0 {
		// On a full file system this is what the reserve is for: without
		// the journal the same events are sent again every round.
		if err := s.writeMetaReserved(encodeAck(journal)); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("spool ack: %w", err)
		}
	}
	for _, e := range toMark {
		s.markAckedLocked(e)
	}
	s.maybeCompactLocked()
	s.mu.Unlock()
	s.maybeMarkLocked()
	s.refillReserve()
	return nil
}

func (s *Spool) markAckedLocked(e *entry) {
	if e.acked {
		return
	}
	e.acked = true
	e.seg.live--
	s.live--
	seg := e.seg
	for seg.first < len(seg.entries) && seg.entries[seg.first].acked {
		seg.first++
	}
	s.dropIDLocked(e)
}

func (s *Spool) dropIDLocked(e *entry) {
	list := s.byID[e.id]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.byID, e.id)
	} else {
		s.byID[e.id] = list
	}
}

// deleteSegmentsLocked removes the given segments from disk and memory. The
// caller holds wmu and mu; no flush is in progress.
func (s *Spool) deleteSegmentsLocked(del map[*segment]bool) error {
	if len(del) == 0 {
		return nil
	}
	var errs []error
	keep := s.segs[:0]
	removed := false
	for _, seg := range s.segs {
		if !del[seg] {
			keep = append(keep, seg)
			continue
		}
		if seg == s.active {
			s.retireLocked()
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			keep = append(keep, seg)
			continue
		}
		removed = true
		seg.removed = true
		s.diskBytes -= seg.size
		for _, e := range seg.entries {
			if !e.acked {
				e.acked = true
				s.live--
				s.dropIDLocked(e)
			}
		}
		seg.live, seg.first = 0, len(seg.entries)
	}
	clear(s.segs[len(keep):])
	s.segs = keep
	if removed {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maybeCompactLocked rewrites meta.log when it has grown well beyond what it
// must remember, or when no segment is left and it is not empty. The caller
// holds wmu and mu.
func (s *Spool) maybeCompactLocked() {
	empty := len(s.segs) == 0 && s.metaSize > 0
	if s.metaSize < minMetaCompact && !empty {
		return
	}
	content := s.metaContentLocked()
	if s.metaSize < 4*int64(len(content)) && !empty {
		return
	}
	if err := s.rewriteMetaLocked(content); err != nil {
		s.log.Warn("spool: compact journal", "err", err)
	}
}

// metaContentLocked is what meta.log must hold: acks of events still on
// disk. (The drop counter has its own file.)
func (s *Spool) metaContentLocked() []byte {
	var ids []string
	seen := map[string]bool{}
	for _, seg := range s.segs {
		for _, e := range seg.entries {
			if e.acked && !seen[e.id] {
				seen[e.id] = true
				ids = append(ids, e.id)
			}
		}
	}
	var out []byte
	for len(ids) > 0 {
		n := min(len(ids), 4096)
		out = append(out, encodeAck(ids[:n])...)
		ids = ids[n:]
	}
	return out
}

func (s *Spool) rewriteMetaLocked(content []byte) error {
	if s.meta != nil {
		s.meta.Close() // Windows cannot rename over an open file
		s.meta = nil
	}
	path := filepath.Join(s.dir, metaName)
	// The old journal stays until the rename: the new one needs its own room.
	if err := s.withReserve(int64(len(content)), func() error { return atomicfile.Write(path, content, 0o600) }); err != nil {
		return fmt.Errorf("rewrite spool journal: %w", err)
	}
	s.dropDirty = false
	s.metaSize = int64(len(content))
	return nil
}

// maybeMarkLocked appends the events_dropped marker if events were dropped
// and it fits. The caller holds wmu but not mu.
func (s *Spool) maybeMarkLocked() {
	s.mu.Lock()
	d := s.drops
	maxBytes, maxRecords := s.opt.MaxBytes, s.opt.MaxRecords
	s.mu.Unlock()
	if d.count == 0 {
		return
	}
	attrs := map[string]string{
		"count":            strconv.FormatUint(d.count, 10),
		"first":            time.Unix(0, d.first).UTC().Format(time.RFC3339Nano),
		"last":             time.Unix(0, d.last).UTC().Format(time.RFC3339Nano),
		"count_by_control": formatCounts(d.byControl),
		"count_by_kind":    formatCounts(d.byKind),
		"disk_full":        strconv.FormatUint(d.diskFull, 10),
		"reason":           dropReason(d, maxBytes, maxRecords),
	}
	if err := s.appendInternalLocked(KindEventsDropped, attrs, d.gen); err != nil {
		s.log.Info("spool: events_dropped marker deferred", "count", d.count, "err", err)
	}
}

func formatCounts(m map[string]uint64) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// dropReason says in words why the events of d were refused.
func dropReason(d dropState, maxBytes int64, maxRecords int) string {
	limits := fmt.Sprintf("spool full (max_bytes=%d, max_records=%d)", maxBytes, maxRecords)
	switch {
	case d.diskFull == d.count:
		return "file system full"
	case d.diskFull == 0:
		return limits
	default:
		return limits + "; file system full"
	}
}

// appendInternalLocked appends one event made by the spool, using the
// reserve. The caller holds wmu but not mu.
func (s *Spool) appendInternalLocked(kind string, attrs map[string]string, clearsGen uint64) error {
	ev := &mamoriv1.Event{
		Id:         s.opt.NewID(),
		Time:       timestamppb.New(s.opt.Now()),
		Control:    AgentControl,
		Kind:       kind,
		Attributes: attrs,
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", kind, err)
	}
	frame, spans := encodeBatch(clearsGen, [][]byte{b})
	// The spool's own events may use the reserve: they are what says that
	// something was lost.
	return s.withReserve(int64(len(frame)), func() error {
		bt, err := s.enqueue(frame, pendingRec{ids: []string{ev.Id}, spans: spans, clearsGen: clearsGen}, true)
		if err != nil {
			return err
		}
		if !bt.done {
			s.flushLocked()
		}
		return bt.err
	})
}

// Close flushes queued appends and closes the files. Later calls return
// ErrClosed.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.flushLocked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.active != nil {
		if err := s.active.f.Close(); err != nil {
			errs = append(errs, err)
		}
		s.active.f = nil
		s.active = nil
	}
	if s.meta != nil {
		if err := s.meta.Close(); err != nil {
			errs = append(errs, err)
		}
		s.meta = nil
	}
	if err := s.dropFile.close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	return nil
}
