package spool

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mamori-dev/mamori/internal/atomicfile"
)

// Without a better guess, a lost event is assumed to take this many bytes.
const guessEventBytes = 256

// damage is one damaged file found by Open.
type damage struct {
	file        string // base name
	bytes       int64  // unreadable bytes
	lost        int64  // estimated records lost
	quarantined string // base name of the .corrupt copy, "" if none
	detail      string

	// For a segment: the good frames, to rewrite the file with.
	seg    *segment
	frames [][]byte
	olds   []int64 // old offset of each frame
	meta   bool
}

type segFile struct {
	seq  uint64
	name string
}

// Open opens or creates the spool in dir (mode 0700) and recovers it: torn
// tails are truncated, damaged files are repaired as far as they can be read
// and reported with a spool_damaged event, acknowledged events are dropped,
// and a pending events_dropped marker is appended if it fits. Open fails only
// when the directory itself cannot be created or read, or opt is invalid.
func Open(dir string, opt Options) (*Spool, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("spool directory %s is not a directory; move the file away", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool directory %s: %w (check its owner and mode)", dir, err)
	}
	s := &Spool{
		dir:     dir,
		opt:     opt,
		log:     opt.Logger,
		segMax:  segMaxFor(opt.MaxBytes),
		byID:    map[string][]*entry{},
		nextSeq: 1,
		drops:   dropState{gen: 1},
	}
	var segs []segFile
	for _, de := range ents {
		name := de.Name()
		switch seq, isSeg := parseSegName(name); {
		case strings.HasPrefix(name, "."+metaName+".tmp"), strings.HasPrefix(name, "."+segPrefix) && strings.Contains(name, ".tmp"):
			// Left by an interrupted atomic rewrite; the original is intact.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				s.log.Warn("spool: remove leftover temporary file", "file", name, "err", err)
			}
		case isSeg && de.Type().IsRegular():
			segs = append(segs, segFile{seq: seq, name: name})
		case isSeg:
			s.log.Warn("spool: ignoring segment name that is not a regular file", "file", name)
		default:
			// meta.log is read below; *.corrupt and unknown files are left alone.
		}
	}
	slices.SortFunc(segs, func(a, b segFile) int { return cmp.Compare(a.seq, b.seq) })

	s.wmu.Lock()
	defer s.wmu.Unlock()
	// First the reserve, before anything else takes the space; an existing
	// one is kept as it is.
	s.res.path = reservePath(dir)
	if err := s.res.fill(); err != nil {
		s.log.Warn("spool: reserve incomplete: on a full file system, drops and acknowledgements may not be recorded", "err", err)
	}
	var damages []*damage
	var maxClears uint64
	for _, sf := range segs {
		s.nextSeq = max(s.nextSeq, sf.seq+1)
		d, clears := s.loadSegment(sf)
		if d != nil {
			damages = append(damages, d)
		}
		maxClears = max(maxClears, clears)
	}
	metaDamage := s.loadMeta()
	if metaDamage != nil {
		damages = append(damages, metaDamage)
	}
	s.dropFile = newDropFile(dir)
	switch d, ok, err := s.dropFile.load(); {
	case err != nil:
		s.log.Error("spool: drop counter unreadable; counting starts over", "err", err)
	case ok && newerDrops(d, s.drops):
		s.drops = d
	case !ok && s.drops.count > 0:
		// A spool from before the counter file: move the counter there.
		s.dropDirty = true
	}

	s.mu.Lock()
	// A marker on disk proves its drop generation was reported, even if the
	// counter reset did not reach meta.log before a crash.
	if maxClears >= s.drops.gen {
		s.drops = dropState{gen: maxClears + 1}
		s.dropDirty = true
	}
	// Segments whose events are all acknowledged can go.
	del := map[*segment]bool{}
	for _, seg := range s.segs {
		if seg.live == 0 && !s.hasDamage(damages, seg) {
			del[seg] = true
		}
	}
	if err := s.deleteSegmentsLocked(del); err != nil {
		s.log.Warn("spool: delete acknowledged segment", "err", err)
	}
	s.mu.Unlock()

	// Report damage before repairing it, so a crash in between reports it
	// twice rather than never.
	for _, d := range damages {
		attrs := map[string]string{
			"file":                  d.file,
			"bytes":                 strconv.FormatInt(d.bytes, 10),
			"records_lost_estimate": strconv.FormatInt(d.lost, 10),
			"detail":                d.detail,
		}
		if d.quarantined != "" {
			attrs["quarantined"] = d.quarantined
		}
		s.log.Error("spool: damaged file", "file", d.file, "bytes", d.bytes, "records_lost_estimate", d.lost, "quarantined", d.quarantined)
		if err := s.appendInternalLocked(KindSpoolDamaged, attrs, 0); err != nil {
			s.log.Error("spool: cannot record damage event", "file", d.file, "err", err)
			if errors.Is(err, ErrFull) || isNoSpace(err) {
				s.mu.Lock()
				s.drops.add(AgentControl, KindSpoolDamaged, isNoSpace(err), 1, s.opt.Now())
				s.dropDirty = true
				s.mu.Unlock()
			}
		}
	}
	for _, d := range damages {
		if d.seg != nil {
			s.rewriteSegment(d)
		}
	}
	s.mu.Lock()
	if metaDamage != nil {
		if err := s.rewriteMetaLocked(s.metaContentLocked()); err != nil {
			s.log.Error("spool: rewrite journal", "err", err)
		}
	} else {
		s.maybeCompactLocked()
	}
	if s.dropDirty {
		if err := s.writeDrops(s.drops); err != nil {
			s.log.Error("spool: persist drop counter", "err", err)
		} else {
			s.dropDirty = false
		}
	}
	if s.drops.count > 0 {
		s.lastDrop = s.drops.last
	}
	s.mu.Unlock()
	s.pruneCorrupt()
	s.maybeMarkLocked()
	s.log.Debug("spool: opened", "dir", dir, "events", s.live, "segments", len(s.segs), "bytes", s.diskBytes)
	return s, nil
}

func (s *Spool) hasDamage(ds []*damage, seg *segment) bool {
	for _, d := range ds {
		if d.seg == seg {
			return true
		}
	}
	return false
}

// loadSegment reads one segment into the index. It returns the damage found
// (nil if none) and the highest drop generation cleared by a marker in it.
func (s *Spool) loadSegment(sf segFile) (*damage, uint64) {
	path := filepath.Join(s.dir, sf.name)
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Error("spool: unreadable segment ignored", "file", sf.name, "err", err)
		return &damage{file: sf.name, detail: "unreadable: " + err.Error()}, 0
	}
	if len(data) == 0 {
		s.removeFile(path)
		return nil, 0
	}
	sc := decode(data)
	seg := &segment{seq: sf.seq, path: path, size: int64(len(data))}
	var (
		frames    [][]byte
		olds      []int64
		clears    uint64
		misplaced int64
		goodBytes int64
		events    int64
	)
	for _, r := range sc.records {
		if r.typ != recBatch {
			misplaced += int64(r.n)
			continue
		}
		clears = max(clears, r.clearsGen)
		frames = append(frames, data[r.off:r.off+int64(r.n)])
		olds = append(olds, r.off)
		goodBytes += int64(r.n)
		for _, ev := range r.events {
			s.addEntryTo(seg, &entry{id: ev.ev.GetId(), seg: seg, recOff: r.off, recLen: r.n, evOff: ev.off, evLen: ev.n, at: ev.ev.GetTime().AsTime().UnixNano()})
			events++
		}
	}
	bad := sc.damagedBytes() + misplaced
	var d *damage
	switch {
	case bad > 0:
		per := int64(guessEventBytes)
		if events > 0 {
			per = max(goodBytes/events, 1)
		}
		d = &damage{
			file:        sf.name,
			bytes:       bad,
			lost:        max((bad+per-1)/per, 1),
			quarantined: s.quarantine(path),
			detail:      fmt.Sprintf("%d good records kept, %d damaged regions", len(frames), len(sc.damaged)+boolInt(!sc.torn && sc.tail.n > 0)),
			seg:         seg,
			frames:      frames,
			olds:        olds,
		}
	case sc.tail.n > 0:
		end := sc.goodEnd()
		s.log.Warn("spool: truncating torn tail left by a crash", "file", sf.name, "bytes", sc.tail.n)
		if err := truncateFile(path, end); err != nil {
			s.log.Error("spool: truncate torn tail", "file", sf.name, "err", err)
		} else {
			seg.size = end
		}
	}
	if d == nil && seg.size == 0 {
		s.removeFile(path)
		return nil, clears
	}
	s.segs = append(s.segs, seg)
	s.diskBytes += seg.size
	return d, clears
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addEntryTo indexes an event read at Open; seg is not yet in s.segs.
func (s *Spool) addEntryTo(seg *segment, e *entry) {
	e.seg = seg
	s.addEntry(e)
}

// loadMeta replays meta.log: acks and the latest drop snapshot.
func (s *Spool) loadMeta() *damage {
	path := filepath.Join(s.dir, metaName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		s.log.Error("spool: unreadable journal; acknowledged events may be sent again", "err", err)
		return &damage{file: metaName, detail: "unreadable: " + err.Error(), meta: true}
	}
	sc := decode(data)
	s.metaSize = int64(len(data))
	var misplaced int64
	var acks int
	for _, r := range sc.records {
		switch r.typ {
		case recAck:
			for _, id := range r.ids {
				for _, e := range slices.Clone(s.byID[id]) {
					s.markAckedLocked(e)
				}
			}
			acks += len(r.ids)
		case recDrops:
			s.drops = r.drops
			s.drops.gen = max(s.drops.gen, 1)
		default:
			misplaced += int64(r.n)
		}
	}
	bad := sc.damagedBytes() + misplaced
	if bad > 0 {
		return &damage{
			file:        metaName,
			bytes:       bad,
			lost:        max(bad/40, 1),
			quarantined: s.quarantine(path),
			detail:      "journal of acks and drop counts damaged: lost acks mean those events are sent again; a lost drop count is not reported",
			meta:        true,
		}
	}
	if sc.tail.n > 0 {
		s.log.Warn("spool: truncating torn tail left by a crash", "file", metaName, "bytes", sc.tail.n)
		if err := truncateFile(path, sc.goodEnd()); err != nil {
			s.log.Error("spool: truncate torn tail", "file", metaName, "err", err)
		} else {
			s.metaSize = sc.goodEnd()
		}
	}
	return nil
}

// rewriteSegment replaces a damaged segment by its good frames.
func (s *Spool) rewriteSegment(d *damage) {
	seg := d.seg
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg.removed {
		return
	}
	if len(d.frames) == 0 || seg.live == 0 {
		if err := s.deleteSegmentsLocked(map[*segment]bool{seg: true}); err != nil {
			s.log.Error("spool: remove damaged segment", "file", d.file, "err", err)
		}
		return
	}
	var content []byte
	moved := map[int64]int64{}
	for i, f := range d.frames {
		moved[d.olds[i]] = int64(len(content))
		content = append(content, f...)
	}
	if err := atomicfile.Write(seg.path, content, 0o600); err != nil {
		s.log.Error("spool: rewrite damaged segment; it will be reported again at the next open", "file", d.file, "err", err)
		return
	}
	for _, e := range seg.entries {
		e.recOff = moved[e.recOff]
	}
	s.diskBytes += int64(len(content)) - seg.size
	seg.size = int64(len(content))
}

// quarantine keeps a copy of a damaged file as <name>.corrupt and returns
// the copy's base name, or "" if it could not be made.
func (s *Spool) quarantine(path string) string {
	dst := path + corruptSuffix
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: remove old corrupt copy", "file", dst, "err", err)
	}
	if err := os.Link(path, dst); err != nil {
		if err := copyFile(path, dst); err != nil {
			s.log.Error("spool: keep corrupt copy", "file", dst, "err", err)
			return ""
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		s.log.Warn("spool: fsync directory", "err", err)
	}
	return filepath.Base(dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("fsync %s: %w", dst, err)
	}
	return out.Close()
}

// pruneCorrupt keeps the newest corrupt copies: at most maxCorruptFiles,
// and no more than MaxBytes in total.
func (s *Spool) pruneCorrupt() {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	type cf struct {
		name string
		size int64
		mod  int64
	}
	var files []cf
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), corruptSuffix) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		files = append(files, cf{de.Name(), fi.Size(), fi.ModTime().UnixNano()})
	}
	slices.SortFunc(files, func(a, b cf) int { return cmp.Compare(b.mod, a.mod) }) // newest first
	var total int64
	for i, f := range files {
		total += f.size
		if i < maxCorruptFiles && total <= s.opt.MaxBytes {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil {
			s.log.Warn("spool: remove old corrupt copy", "file", f.name, "err", err)
		} else {
			s.log.Info("spool: removed old corrupt copy", "file", f.name)
		}
	}
}

func (s *Spool) removeFile(path string) {
	if err := os.Remove(path); err != nil {
		s.log.Warn("spool: remove empty file", "file", path, "err", err)
		return
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		s.log.Warn("spool: fsync directory", "err", err)
	}
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return f.Close()
}
