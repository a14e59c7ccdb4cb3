package spool

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// batchFrame encodes events as one batch frame.
func batchFrame(t testing.TB, evs ...*mamoriv1.Event) []byte {
	t.Helper()
	var enc [][]byte
	for _, ev := range evs {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		enc = append(enc, b)
	}
	f, _ := encodeBatch(0, enc)
	return f
}

// summary is what a test compares about a scan.
type summary struct {
	Records [][]string // ids per record ("ack:" prefix for ack ids)
	Offsets []int64
	Damaged [][2]int64
	Tail    [2]int64
	Torn    bool
}

func summarize(sc scan) summary {
	var s summary
	for _, r := range sc.records {
		var ids []string
		for _, e := range r.events {
			ids = append(ids, e.ev.GetId())
		}
		for _, id := range r.ids {
			ids = append(ids, "ack:"+id)
		}
		if r.typ == recDrops {
			ids = append(ids, fmt.Sprintf("drops:%d/%d", r.drops.gen, r.drops.count))
		}
		s.Records = append(s.Records, ids)
		s.Offsets = append(s.Offsets, r.off)
	}
	for _, d := range sc.damaged {
		s.Damaged = append(s.Damaged, [2]int64{d.off, d.n})
	}
	s.Tail = [2]int64{sc.tail.off, sc.tail.n}
	s.Torn = sc.torn
	return s
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestFrameLayout(t *testing.T) {
	// Pins the on-disk format: a change here breaks existing spools.
	got := hex.EncodeToString(encodeAck([]string{"a"}))
	want := "4d537031" + "04000000" + hex.EncodeToString(le32(frameCRC([]byte{4, 0, 0, 0}, []byte{2, 1, 1, 'a'}))) + "02010161"
	if got != want {
		t.Errorf("ack frame = %s, want %s", got, want)
	}
	// CRC-32C check value of "123456789" is 0xe3069283.
	if c := frameCRC(nil, []byte("123456789")); c != 0xe3069283 {
		t.Errorf("crc32c = %#x, want 0xe3069283", c)
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func TestDecode(t *testing.T) {
	a := batchFrame(t, testEvent("a1", "usb"), testEvent("a2", "mfa"))
	b := batchFrame(t, testEvent("b1", "usb"))
	c := batchFrame(t, testEvent("c1", "usb"))
	la, lb := int64(len(a)), int64(len(b))
	badCRC := bytes.Clone(b)
	badCRC[len(badCRC)-1] ^= 0xff
	badType := appendFrame(nil, []byte{9, 1, 2})
	trailing := appendFrame(nil, []byte{recAck, 1, 1, 'x', 0})
	hugeLen := cat([]byte(magic), []byte{0xff, 0xff, 0xff, 0x7f}, make([]byte, 20))
	garbage := []byte("this is not a frame at all!")
	drops := dropState{gen: 3}
	drops.add("usb", "usb_blocked", false, 5, testTime)

	tests := []struct {
		name string
		in   []byte
		want summary
	}{
		{name: "empty", in: nil, want: summary{}},
		{name: "one", in: a, want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}}},
		{name: "three", in: cat(a, b, c), want: summary{Records: [][]string{{"a1", "a2"}, {"b1"}, {"c1"}}, Offsets: []int64{0, la, la + lb}}},
		{name: "ack and drops", in: cat(encodeAck([]string{"x", "y"}), encodeDrops(drops)), want: summary{Records: [][]string{{"ack:x", "ack:y"}, {"drops:3/5"}}, Offsets: []int64{0, 18}}},
		{
			name: "last frame cut short is torn",
			in:   cat(a, b[:len(b)-3]),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, lb - 3}, Torn: true},
		},
		{
			name: "partial header is torn",
			in:   cat(a, []byte("MS")),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, 2}, Torn: true},
		},
		{
			name: "zeros after last frame are torn",
			in:   cat(a, make([]byte, 100)),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, 100}, Torn: true},
		},
		{
			name: "bad checksum at the end is torn",
			in:   cat(a, badCRC),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, lb}, Torn: true},
		},
		{
			name: "garbage at the end is damage",
			in:   cat(a, garbage),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, int64(len(garbage))}},
		},
		{
			name: "only garbage",
			in:   garbage,
			want: summary{Tail: [2]int64{0, int64(len(garbage))}},
		},
		{
			name: "garbage between frames",
			in:   cat(a, garbage, c),
			want: summary{Records: [][]string{{"a1", "a2"}, {"c1"}}, Offsets: []int64{0, la + int64(len(garbage))}, Damaged: [][2]int64{{la, int64(len(garbage))}}},
		},
		{
			name: "bad checksum in the middle",
			in:   cat(a, badCRC, c),
			want: summary{Records: [][]string{{"a1", "a2"}, {"c1"}}, Offsets: []int64{0, la + lb}, Damaged: [][2]int64{{la, lb}}},
		},
		{
			name: "first frame bad",
			in:   cat(badCRC, a),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{lb}, Damaged: [][2]int64{{0, lb}}},
		},
		{
			name: "good checksum, unknown type",
			in:   cat(badType, a),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{int64(len(badType))}, Damaged: [][2]int64{{0, int64(len(badType))}}},
		},
		{
			name: "good checksum, trailing bytes",
			in:   cat(a, trailing, c),
			want: summary{Records: [][]string{{"a1", "a2"}, {"c1"}}, Offsets: []int64{0, la + int64(len(trailing))}, Damaged: [][2]int64{{la, int64(len(trailing))}}},
		},
		{
			name: "length beyond the file",
			in:   cat(a, hugeLen),
			want: summary{Records: [][]string{{"a1", "a2"}}, Offsets: []int64{0}, Tail: [2]int64{la, int64(len(hugeLen))}, Torn: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(decode(tt.in))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	noID, _ := proto.Marshal(&mamoriv1.Event{Kind: "x"})
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"empty batch", []byte{recBatch, 0, 0}},
		{"event without id", append([]byte{recBatch, 0, 1, byte(len(noID))}, noID...)},
		{"event not protobuf", []byte{recBatch, 0, 1, 2, 0xff, 0xff}},
		{"count larger than payload", []byte{recAck, 100, 1, 'a'}},
		{"empty id", []byte{recAck, 1, 0}},
		{"truncated varint", []byte{recDrops, 0x80}},
		{"too many controls", append([]byte{recDrops, 1, 1, 0, 0, 200}, make([]byte, 400)...)},
		{"unknown type", []byte{0x7f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if rec, err := decodePayload(tt.payload, headerLen); err == nil {
				t.Errorf("decodePayload(%x) = %+v, want error", tt.payload, rec)
			}
		})
	}
}

func TestDropStateBounded(t *testing.T) {
	var d dropState
	for i := range 100 {
		d.add(fmt.Sprintf("control-%03d-%s", i, bytes.Repeat([]byte("x"), 100)), "k", i%2 == 0, 1, testTime)
	}
	if len(d.byControl) > maxDropControls+1 {
		t.Errorf("%d controls kept, want at most %d", len(d.byControl), maxDropControls+1)
	}
	if d.count != 100 || d.byControl[otherControlLabel] != 100-maxDropControls {
		t.Errorf("count %d, other %d", d.count, d.byControl[otherControlLabel])
	}
	if n := len(encodeDrops(d)); n > reserveBytes/2 {
		t.Errorf("drops snapshot is %d bytes; it must stay well inside the %d byte reserve", n, reserveBytes)
	}
	rec, ok := frameAt(encodeDrops(d), 0)
	if !ok {
		t.Fatal("drops frame does not decode")
	}
	if diff := cmp.Diff(d.byControl, rec.drops.byControl); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// FuzzDecode builds a file of good frames, damages it at pos with garbage
// (overwritten or inserted), and checks that decode neither panics, loses a
// frame before the damage, nor returns anything that is not a checksummed
// frame of the input.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(5), uint32(40), []byte("garbage"), false)
	f.Add(uint8(3), uint32(0), []byte{}, false)
	f.Add(uint8(4), uint32(100), []byte("MSp1\x10\x00\x00\x00"), true)
	f.Add(uint8(2), uint32(7), make([]byte, 30), false)
	f.Add(uint8(6), uint32(1000), []byte{0xff}, true)
	f.Fuzz(func(t *testing.T, n uint8, pos uint32, garbage []byte, insert bool) {
		var good []byte
		var ends []int
		var ids [][]string
		for i := range int(n % 12) {
			var evs []*mamoriv1.Event
			var rid []string
			for j := range 1 + i%3 {
				id := fmt.Sprintf("ev-%d-%d", i, j)
				evs = append(evs, testEvent(id, "usb"))
				rid = append(rid, id)
			}
			good = append(good, batchFrame(t, evs...)...)
			ends = append(ends, len(good))
			ids = append(ids, rid)
		}
		at := 0
		if len(good) > 0 {
			at = int(pos % uint32(len(good)+1))
		}
		var in []byte
		if insert {
			in = cat(good[:at], garbage, good[at:])
		} else {
			in = bytes.Clone(good)
			for i, c := range garbage {
				if at+i < len(in) {
					in[at+i] = c
				} else {
					in = append(in, c)
				}
			}
		}
		damageAt := at
		if len(garbage) == 0 {
			damageAt = len(in)
		}
		sc := decode(in)

		// Nothing invented: every record is a checksummed frame of the input
		// at its offset; records, damage and tail tile the input in order.
		type piece struct{ off, n int64 }
		var pieces []piece
		for _, r := range sc.records {
			again, ok := frameAt(in, int(r.off))
			if !ok || again.n != r.n {
				t.Fatalf("record at %d is not a frame of the input", r.off)
			}
			pieces = append(pieces, piece{r.off, int64(r.n)})
		}
		for _, d := range sc.damaged {
			pieces = append(pieces, piece{d.off, d.n})
		}
		if sc.tail.n > 0 {
			pieces = append(pieces, piece{sc.tail.off, sc.tail.n})
		}
		var covered int64
		sort.Slice(pieces, func(i, j int) bool { return pieces[i].off < pieces[j].off })
		for _, p := range pieces {
			if p.off != covered {
				t.Fatalf("gap or overlap at %d (piece at %d)", covered, p.off)
			}
			covered += p.n
		}
		if covered != int64(len(in)) {
			t.Fatalf("pieces cover %d of %d bytes", covered, len(in))
		}

		// Nothing lost before the damage.
		for i, end := range ends {
			if end > damageAt {
				break
			}
			if i >= len(sc.records) {
				t.Fatalf("record %d (ends at %d, damage at %d) missing", i, end, damageAt)
			}
			var got []string
			for _, e := range sc.records[i].events {
				got = append(got, e.ev.GetId())
			}
			if diff := cmp.Diff(ids[i], got); diff != "" {
				t.Fatalf("record %d (-want +got):\n%s", i, diff)
			}
		}
		if len(garbage) == 0 && (len(sc.records) != len(ends) || sc.tail.n != 0 || len(sc.damaged) != 0) {
			t.Fatalf("undamaged input: %d of %d records, tail %v, damage %v", len(sc.records), len(ends), sc.tail, sc.damaged)
		}
	})
}

// FuzzOpen writes arbitrary bytes as a segment file and opens the spool:
// Open must succeed, return exactly the events of the good frames (plus the
// spool's own damage report), and leave a spool that works and reopens
// cleanly.
func FuzzOpen(f *testing.F) {
	good := cat(batchFrame(f, testEvent("a", "usb")), batchFrame(f, testEvent("b", "mfa"), testEvent("c", "usb")))
	f.Add(good)
	f.Add(good[:len(good)-4])
	f.Add(cat(good[:20], []byte("garbage"), good[20:]))
	f.Add([]byte{})
	f.Add([]byte("MSp1"))
	f.Add(encodeAck([]string{"a"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, segName(1)), data)
		var want []string
		for _, r := range decode(data).records {
			for _, e := range r.events {
				if e.ev.GetControl() != AgentControl {
					want = append(want, e.ev.GetId())
				}
			}
		}
		opt := testOptions(t)
		opt.Logger = nil
		s, err := Open(dir, opt)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		got := userIDs(allPending(t, s))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		mustAppend(t, s, testEvent("new", "usb"))
		s.Close()
		s2, err := Open(dir, opt)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s2.Close()
		if diff := cmp.Diff(append(want, "new"), userIDs(allPending(t, s2))); diff != "" {
			t.Fatalf("after reopen (-want +got):\n%s", diff)
		}
	})
}
