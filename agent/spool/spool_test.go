package spool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestAppendPendingAckReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t))
	want := events(ids("e", 0, 10), "usb")
	mustAppend(t, s, want[:3]...)
	for _, ev := range want[3:] {
		mustAppend(t, s, ev)
	}
	if diff := cmp.Diff(want, allPending(t, s), protocmp.Transform()); diff != "" {
		t.Fatalf("Pending (-want +got):\n%s", diff)
	}
	if err := s.Ack([]string{"e0000", "e0004", "unknown", "e0004"}); err != nil {
		t.Fatal(err)
	}
	wantIDs := []string{"e0001", "e0002", "e0003", "e0005", "e0006", "e0007", "e0008", "e0009"}
	if diff := cmp.Diff(wantIDs, userIDs(allPending(t, s))); diff != "" {
		t.Errorf("after Ack (-want +got):\n%s", diff)
	}
	if s.Len() != 8 {
		t.Errorf("Len = %d, want 8", s.Len())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, testOptions(t))
	if diff := cmp.Diff(wantIDs, userIDs(allPending(t, s))); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if err := s.Ack(wantIDs); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Errorf("Len = %d after acking everything", s.Len())
	}
	if segs := segPaths(t, dir); len(segs) != 0 {
		t.Errorf("segments left after acking everything: %v", segs)
	}
}

func TestPendingLimits(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testOptions(t))
	mustAppend(t, s, events(ids("e", 0, 10), "usb")...)
	one := len(mustMarshal(t, testEvent("e0000", "usb")))
	tests := []struct {
		name      string
		maxEvents int
		maxBytes  int
		want      int
	}{
		{"no limit", 0, 0, 10},
		{"events", 4, 0, 4},
		{"bytes", 0, 3*one + 1, 3},
		{"both, events bind", 2, 5 * one, 2},
		{"tiny byte limit still returns one", 0, 1, 1},
		{"more than held", 50, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Pending(tt.maxEvents, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ids("e", 0, tt.want), userIDs(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendRefuses(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t))
	big := testEvent("big", "usb")
	big.Attributes["blob"] = strings.Repeat("x", MaxEventBytes)
	tests := []struct {
		name    string
		ctx     context.Context
		evs     []*mamoriv1.Event
		wantErr error
	}{
		{"too large, whole call refused", context.Background(), []*mamoriv1.Event{testEvent("ok", "usb"), big}, ErrEventTooLarge},
		{"no id", context.Background(), []*mamoriv1.Event{testEvent("", "usb")}, nil},
		{"nil event", context.Background(), []*mamoriv1.Event{nil}, nil},
		{"cancelled", cancelled(), []*mamoriv1.Event{testEvent("c", "usb")}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Append(tt.ctx, tt.evs...)
			if err == nil {
				t.Fatal("Append succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Append: %v, want %v", err, tt.wantErr)
			}
			t.Logf("error: %v", err)
		})
	}
	if s.Len() != 0 || len(segPaths(t, dir)) != 0 {
		t.Errorf("refused appends wrote something: Len %d, segments %v", s.Len(), segPaths(t, dir))
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t))
	const workers, per = 8, 60
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				ev := testEvent(fmt.Sprintf("w%d-%03d", w, i), "usb")
				if i%3 == 0 {
					// A two-event call interleaves with the others but stays whole.
					if err := s.Append(context.Background(), ev, testEvent(ev.Id+"b", "usb")); err != nil {
						t.Error(err)
					}
					continue
				}
				if err := s.Append(context.Background(), ev); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	check := func(s *Spool) {
		got := userIDs(allPending(t, s))
		last := map[string]int{}
		seen := map[string]bool{}
		for i, id := range got {
			if seen[id] {
				t.Fatalf("id %s twice", id)
			}
			seen[id] = true
			if strings.HasSuffix(id, "b") {
				if got[i-1]+"b" != id {
					t.Fatalf("%s not right after its call's first event %s", id, got[i-1])
				}
				continue
			}
			w, n, _ := strings.Cut(id, "-")
			k, _ := strconv.Atoi(n)
			if p, ok := last[w]; ok && k <= p {
				t.Fatalf("worker %s: %d after %d", w, k, p)
			}
			last[w] = k
		}
		if want := workers * (per + per/3); len(got) != want {
			t.Fatalf("%d events, want %d", len(got), want)
		}
	}
	check(s)
	s.Close()
	check(mustOpen(t, dir, testOptions(t)))
}

// TestDirectoryStaysBounded runs many append/ack cycles with partial acks
// and checks that segments are deleted and the journal is compacted.
func TestDirectoryStaysBounded(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(t)
	opt.MaxBytes = 512 << 10
	s := mustOpen(t, dir, opt)
	var maxTotal int64
	maxFiles := 0
	n := 0
	for cycle := range 400 {
		mustAppend(t, s, events(ids(fmt.Sprintf("c%d-", cycle), 0, 10), "usb")...)
		n += 10
		// Ack every other pending event, so segments are partly acked for a
		// while and the journal has work to do.
		evs, err := s.Pending(12, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ack []string
		for i, ev := range evs {
			if i%2 == 0 || cycle%5 == 0 {
				ack = append(ack, ev.Id)
			}
		}
		if err := s.Ack(ack); err != nil {
			t.Fatal(err)
		}
		var total int64
		files := dirFiles(t, dir)
		for _, size := range files {
			total += size
		}
		maxTotal, maxFiles = max(maxTotal, total), max(maxFiles, len(files))
	}
	if maxTotal > 2*opt.MaxBytes {
		t.Errorf("directory grew to %d bytes (MaxBytes %d)", maxTotal, opt.MaxBytes)
	}
	if maxFiles > 40 {
		t.Errorf("directory grew to %d files", maxFiles)
	}
	t.Logf("%d events appended; directory peaked at %d bytes, %d files; %d events held", n, maxTotal, maxFiles, s.Len())

	if err := s.Ack(userIDs(allPending(t, s))); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d", s.Len())
	}
	s.Close()
	s = mustOpen(t, dir, opt)
	if s.Len() != 0 {
		t.Errorf("Len = %d after reopen", s.Len())
	}
	files := dirFiles(t, dir)
	if files[reserveName] != reserveSize {
		t.Errorf("reserve is %d bytes, want %d", files[reserveName], reserveSize)
	}
	delete(files, reserveName)
	if len(files) > 1 || files[metaName] > 4<<10 {
		t.Errorf("after acking everything and reopening: %v", files)
	}
}

func TestBound(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(t)
	opt.MaxRecords = 20 // Append may use 20 - reserveRecords = 16
	s := mustOpen(t, dir, opt)
	for _, id := range ids("e", 0, 16) {
		mustAppend(t, s, testEvent(id, "usb"))
	}
	if err := s.Append(context.Background(), testEvent("x1", "usb")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append on full spool: %v, want ErrFull", err)
	}
	if err := s.Append(context.Background(), testEvent("x2", "mfa"), testEvent("x3", "usb"), testEvent("x4", "usb")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append on full spool: %v, want ErrFull", err)
	}
	if s.Len() != 16 {
		t.Fatalf("Len = %d, want 16: a refused call must write nothing", s.Len())
	}
	// Simulate a crash: abandon s without Close (everything is fsync'd) and
	// open the directory again; the count survives.
	s2 := mustOpen(t, dir, opt)
	check := func(s *Spool, want int) {
		t.Helper()
		got := spoolEvents(allPending(t, s), KindEventsDropped)
		if len(got) != want {
			t.Fatalf("%d events_dropped markers, want %d", len(got), want)
		}
		if want == 0 {
			return
		}
		wantAttrs := map[string]string{
			"count":            "4",
			"count_by_control": "mfa=1,usb=3",
			"count_by_kind":    "mfa/usb_blocked=1,usb/usb_blocked=3",
			"disk_full":        "0",
			"first":            "2026-04-01T09:00:00Z",
			"last":             "2026-04-01T09:00:00Z",
			"reason":           "spool full (max_bytes=67108864, max_records=20)",
		}
		if diff := cmp.Diff(wantAttrs, got[0].GetAttributes()); diff != "" {
			t.Errorf("marker attributes (-want +got):\n%s", diff)
		}
	}
	// The marker is written at Open, from the reserve.
	check(s2, 1)
	if s2.Len() != 17 {
		t.Errorf("Len = %d, want 16 events + marker", s2.Len())
	}
	s2.Close()
	s3 := mustOpen(t, dir, opt)
	check(s3, 1) // not twice

	// Still full for Append; ack some, room again, no second marker.
	if err := s3.Append(context.Background(), testEvent("y1", "usb")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append: %v, want ErrFull", err)
	}
	if err := s3.Ack(ids("e", 0, 8)); err != nil {
		t.Fatal(err)
	}
	got := spoolEvents(allPending(t, s3), KindEventsDropped)
	if len(got) != 2 || got[1].Attributes["count"] != "1" {
		t.Fatalf("after Ack: markers %v, want a second one counting 1", got)
	}
	mustAppend(t, s3, testEvent("z1", "usb"))
	s3.Close()
	s4 := mustOpen(t, dir, opt)
	if got := spoolEvents(allPending(t, s4), KindEventsDropped); len(got) != 2 {
		t.Errorf("after reopen: %d markers, want 2", len(got))
	}
}

func TestBoundBytes(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(t)
	opt.MaxBytes = minMaxBytes
	s := mustOpen(t, dir, opt)
	n := 0
	var err error
	for ; n < 1000; n++ {
		ev := testEvent(fmt.Sprintf("e%04d", n), "usb")
		ev.Attributes["pad"] = strings.Repeat("p", 3000)
		if err = s.Append(context.Background(), ev); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d appends: %v, want ErrFull", n, err)
	}
	var total int64
	for _, p := range segPaths(t, dir) {
		total += dirFiles(t, dir)[p[len(dir)+1:]]
	}
	if total > opt.MaxBytes-reserveBytes {
		t.Errorf("segments hold %d bytes; Append may use %d", total, opt.MaxBytes-reserveBytes)
	}
	if err := s.Ack(ids("e", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if got := spoolEvents(allPending(t, s), KindEventsDropped); len(got) != 1 || got[0].Attributes["count"] != "1" {
		t.Errorf("markers %v, want one counting 1", got)
	}
}

func TestOptionsAndClosed(t *testing.T) {
	dir := t.TempDir()
	for _, opt := range []Options{{MaxBytes: 1000}, {MaxRecords: 3}} {
		if _, err := Open(dir, opt); err == nil {
			t.Errorf("Open(%+v) succeeded, want error", opt)
		}
	}
	s, err := Open(dir, Options{}) // all defaults
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, testEvent("a", "usb"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Append(context.Background(), testEvent("b", "usb")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := s.Pending(1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Pending after Close: %v", err)
	}
	if err := s.Ack([]string{"a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack after Close: %v", err)
	}
}

func mustMarshal(t testing.TB, ev *mamoriv1.Event) []byte {
	t.Helper()
	return batchFrame(t, ev)[headerLen+4:] // type, clearsGen, count, len: 4 bytes for a small event
}
