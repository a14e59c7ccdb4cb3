package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Frame layout, little endian:
//
//	0  4  magic "MSp1"
//	4  4  payload length n
//	8  4  CRC-32C (Castagnoli) of bytes 4..8 followed by the payload
//	12 n  payload; its first byte is the record type
const (
	magic       = "MSp1"
	headerLen   = 12
	maxFrameLen = 1 << 30 // sanity bound for decoding; real frames are far smaller

	// MaxEventBytes is the largest encoded event Append accepts.
	MaxEventBytes = 64 << 10

	recBatch byte = 1 // events appended by one call (or one internal event)
	recAck   byte = 2 // ids acknowledged by the server
	recDrops byte = 3 // snapshot of the drop counter

	// Bounds that keep a drops snapshot (and so the events_dropped marker)
	// small enough to always fit in the reserve.
	maxDropControls   = 32
	maxControlLen     = 64
	maxKindKeyLen     = 128
	otherControlLabel = "(other)"
)

// span is a byte range [off, off+n).
type span struct {
	off int64
	n   int64
}

// recEvent is one event inside a batch frame; off is relative to the frame
// start.
type recEvent struct {
	off, n int
	ev     *mamoriv1.Event
}

// record is a decoded, checksummed frame.
type record struct {
	off       int64 // frame start in the file
	n         int   // frame length including header
	typ       byte
	clearsGen uint64     // recBatch: the drop generation this marker reports
	events    []recEvent // recBatch
	ids       []string   // recAck
	drops     dropState  // recDrops
}

// scan is what decode found in a file.
type scan struct {
	records []record
	damaged []span // unreadable bytes followed by at least one good record
	tail    span   // unreadable bytes at the end of the file (n == 0: none)
	torn    bool   // tail looks like an interrupted append, not damage
}

// damagedBytes counts the bytes lost to damage (a torn tail is not damage).
func (sc *scan) damagedBytes() int64 {
	var n int64
	for _, d := range sc.damaged {
		n += d.n
	}
	if !sc.torn {
		n += sc.tail.n
	}
	return n
}

// goodEnd is the end of the last good record.
func (sc *scan) goodEnd() int64 {
	if len(sc.records) == 0 {
		return 0
	}
	r := sc.records[len(sc.records)-1]
	return r.off + int64(r.n)
}

func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

func frameCRC(lenField, payload []byte) uint32 {
	t := crcTable()
	return crc32.Update(crc32.Update(0, t, lenField), t, payload)
}

// appendFrame appends payload, framed, to dst.
func appendFrame(dst, payload []byte) []byte {
	var h [headerLen]byte
	copy(h[:4], magic)
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[8:12], frameCRC(h[4:8], payload))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// encodeBatch frames already-marshalled events as one batch record and
// returns the frame and each event's span relative to the frame start.
func encodeBatch(clearsGen uint64, evs [][]byte) ([]byte, []span) {
	p := []byte{recBatch}
	p = binary.AppendUvarint(p, clearsGen)
	p = binary.AppendUvarint(p, uint64(len(evs)))
	spans := make([]span, len(evs))
	for i, e := range evs {
		p = binary.AppendUvarint(p, uint64(len(e)))
		spans[i] = span{off: int64(headerLen + len(p)), n: int64(len(e))}
		p = append(p, e...)
	}
	return appendFrame(make([]byte, 0, headerLen+len(p)), p), spans
}

// encodeAck frames a list of acknowledged ids.
func encodeAck(ids []string) []byte {
	p := []byte{recAck}
	p = binary.AppendUvarint(p, uint64(len(ids)))
	for _, id := range ids {
		p = binary.AppendUvarint(p, uint64(len(id)))
		p = append(p, id...)
	}
	return appendFrame(nil, p)
}

// encodeDrops frames a drop counter snapshot.
func encodeDrops(d dropState) []byte {
	p := []byte{recDrops}
	p = binary.AppendUvarint(p, d.gen)
	p = binary.AppendUvarint(p, d.count)
	p = binary.AppendVarint(p, d.first)
	p = binary.AppendVarint(p, d.last)
	p = appendCounts(p, d.byControl)
	// Added later, so a snapshot may end before them: events dropped
	// because the file system was full, and the counts by control/kind.
	p = binary.AppendUvarint(p, d.diskFull)
	p = appendCounts(p, d.byKind)
	return appendFrame(nil, p)
}

func appendCounts(p []byte, m map[string]uint64) []byte {
	keys := sortedKeys(m)
	p = binary.AppendUvarint(p, uint64(len(keys)))
	for _, k := range keys {
		p = binary.AppendUvarint(p, uint64(len(k)))
		p = append(p, k...)
		p = binary.AppendUvarint(p, m[k])
	}
	return p
}

var errBadPayload = errors.New("malformed payload")

// payloadReader reads the varint-based payload encoding; the first error
// sticks.
type payloadReader struct {
	b   []byte
	pos int
	err error
}

// counts reads what appendCounts wrote into m.
func (r *payloadReader) counts(m map[string]uint64, maxKey uint64) {
	n := r.count(2)
	if n > maxDropControls+1 {
		r.err = errBadPayload
	}
	for i := 0; i < n && r.err == nil; i++ {
		k, _ := r.bytes(maxKey)
		m[string(k)] += r.uvarint()
	}
}

func (r *payloadReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		r.err = errBadPayload
		return 0
	}
	r.pos += n
	return v
}

func (r *payloadReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.pos:])
	if n <= 0 {
		r.err = errBadPayload
		return 0
	}
	r.pos += n
	return v
}

// bytes returns the next length-prefixed field and its offset in b.
func (r *payloadReader) bytes(max uint64) ([]byte, int) {
	n := r.uvarint()
	if r.err != nil {
		return nil, 0
	}
	if n > max || n > uint64(len(r.b)-r.pos) {
		r.err = errBadPayload
		return nil, 0
	}
	off := r.pos
	r.pos += int(n)
	return r.b[off:r.pos], off
}

// count reads an element count; each element needs at least min bytes, which
// bounds allocations on hostile input.
func (r *payloadReader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64((len(r.b)-r.pos)/min) {
		r.err = errBadPayload
	}
	return int(n)
}

// decodePayload parses the payload of a frame whose checksum matched.
// payloadOff is the payload's offset from the frame start.
func decodePayload(p []byte, payloadOff int) (record, error) {
	if len(p) == 0 {
		return record{}, errBadPayload
	}
	rec := record{typ: p[0]}
	r := &payloadReader{b: p, pos: 1}
	switch rec.typ {
	case recBatch:
		rec.clearsGen = r.uvarint()
		n := r.count(1)
		if r.err == nil && n == 0 {
			return record{}, fmt.Errorf("empty batch: %w", errBadPayload)
		}
		for i := 0; i < n && r.err == nil; i++ {
			b, off := r.bytes(MaxEventBytes)
			if r.err != nil {
				break
			}
			ev := &mamoriv1.Event{}
			if err := proto.Unmarshal(b, ev); err != nil {
				return record{}, fmt.Errorf("event %d: %w", i, err)
			}
			if ev.GetId() == "" {
				return record{}, fmt.Errorf("event %d has no id: %w", i, errBadPayload)
			}
			rec.events = append(rec.events, recEvent{off: payloadOff + off, n: len(b), ev: ev})
		}
	case recAck:
		n := r.count(2)
		for i := 0; i < n && r.err == nil; i++ {
			b, _ := r.bytes(1024)
			if r.err == nil && len(b) == 0 {
				r.err = errBadPayload
			}
			rec.ids = append(rec.ids, string(b))
		}
	case recDrops:
		d := dropState{byControl: map[string]uint64{}, byKind: map[string]uint64{}}
		d.gen = r.uvarint()
		d.count = r.uvarint()
		d.first = r.varint()
		d.last = r.varint()
		r.counts(d.byControl, maxControlLen)
		if r.err == nil && r.pos < len(p) { // a snapshot written before these were added ends here
			d.diskFull = r.uvarint()
			r.counts(d.byKind, maxKindKeyLen)
		}
		if r.err == nil && (d.diskFull > d.count) {
			r.err = errBadPayload
		}
		rec.drops = d
	default:
		return record{}, fmt.Errorf("unknown record type %d: %w", rec.typ, errBadPayload)
	}
	if r.err != nil {
		return record{}, r.err
	}
	if r.pos != len(p) {
		return record{}, fmt.Errorf("%d trailing bytes: %w", len(p)-r.pos, errBadPayload)
	}
	return rec, nil
}

// frameAt decodes the frame at b[off:]. ok is false if there is no complete,
// checksummed, well-formed frame there.
func frameAt(b []byte, off int) (record, bool) {
	rest := b[off:]
	if len(rest) < headerLen || string(rest[:4]) != magic {
		return record{}, false
	}
	n := binary.LittleEndian.Uint32(rest[4:8])
	if n > maxFrameLen || uint64(n) > uint64(len(rest)-headerLen) {
		return record{}, false
	}
	payload := rest[headerLen : headerLen+int(n)]
	if binary.LittleEndian.Uint32(rest[8:12]) != frameCRC(rest[4:8], payload) {
		return record{}, false
	}
	rec, err := decodePayload(payload, headerLen)
	if err != nil {
		return record{}, false
	}
	rec.off = int64(off)
	rec.n = headerLen + int(n)
	return rec, true
}

// decode reads every good frame in b. After a bad spot it searches for the
// next magic that starts a good frame; the bytes skipped are damage. Bytes
// after the last good frame are the tail; the tail counts as torn (an append
// cut short by a crash) when it is a prefix of a header, starts with the
// magic, or is all zero, and as damage otherwise.
//
// decode never invents a record: every record returned is a frame that
// passed its checksum at the offset it reports.
func decode(b []byte) scan {
	var sc scan
	pos := 0
	for pos < len(b) {
		if rec, ok := frameAt(b, pos); ok {
			sc.records = append(sc.records, rec)
			pos += rec.n
			continue
		}
		next := -1
		for q := pos + 1; q < len(b); {
			i := bytes.Index(b[q:], []byte(magic))
			if i < 0 {
				break
			}
			if _, ok := frameAt(b, q+i); ok {
				next = q + i
				break
			}
			q += i + 1
		}
		if next < 0 {
			tail := b[pos:]
			sc.tail = span{off: int64(pos), n: int64(len(tail))}
			sc.torn = isTorn(tail)
			break
		}
		sc.damaged = append(sc.damaged, span{off: int64(pos), n: int64(next - pos)})
		pos = next
	}
	return sc
}

func isTorn(tail []byte) bool {
	if len(tail) < len(magic) {
		return bytes.HasPrefix([]byte(magic), tail)
	}
	if string(tail[:len(magic)]) == magic {
		return true
	}
	for _, c := range tail {
		if c != 0 {
			return false
		}
	}
	return true
}

// dropState counts events refused because the spool was full (its limits,
// or the file system under it). gen numbers the counter: an events_dropped
// marker reports one generation, and once the marker is on disk the counter
// starts over with gen+1.
type dropState struct {
	gen         uint64
	count       uint64
	diskFull    uint64 // of count, refused because the file system was full
	first, last int64  // unix nanoseconds
	byControl   map[string]uint64
	byKind      map[string]uint64 // "control/kind"
}

// add counts n dropped events of control and kind at time t.
func (d *dropState) add(control, kind string, diskFull bool, n uint64, t time.Time) {
	if d.byControl == nil {
		d.byControl = map[string]uint64{}
	}
	if d.byKind == nil {
		d.byKind = map[string]uint64{}
	}
	countIn(d.byControl, control, maxControlLen, n)
	countIn(d.byKind, control+"/"+kind, maxKindKeyLen, n)
	if diskFull {
		d.diskFull += n
	}
	ns := t.UnixNano()
	if d.count == 0 || ns < d.first {
		d.first = ns
	}
	if d.count == 0 || ns > d.last {
		d.last = ns
	}
	d.count += n
}

// countIn adds n to m[key], the key cut to maxLen bytes; past
// maxDropControls keys, to otherControlLabel, so the snapshot stays small
// whatever the events were called.
func countIn(m map[string]uint64, key string, maxLen int, n uint64) {
	if len(key) > maxLen {
		key = key[:maxLen]
	}
	if _, ok := m[key]; !ok && len(m) >= maxDropControls {
		key = otherControlLabel
	}
	m[key] += n
}

// sortedKeys returns m's keys in sorted order.
func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
