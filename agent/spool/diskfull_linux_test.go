package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// padded is an event of about 1 KiB.
func padded(id string) *mamoriv1.Event {
	ev := testEvent(id, "usb")
	ev.Attributes["pad"] = strings.Repeat("p", 900)
	return ev
}

// TestDiskFull runs the spool on a 256 KiB tmpfs that another program
// fills: every Append that cannot be written fails with ENOSPC *and*
// ErrFull, and its events are counted, by control and kind; once space is
// freed appends work again, and the events_dropped marker reports exactly
// the refused events as lost to a full disk. Nothing is lost silently.
func TestDiskFull(t *testing.T) {
	mnt := testenv.TmpFS(t, "256k")
	dir := filepath.Join(mnt, "spool")
	opt := testOptions(t)
	opt.MaxBytes = 16 << 20 // larger than the file system: the disk fills first
	var logBuf bytes.Buffer
	opt.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	s := mustOpen(t, dir, opt)

	var appended []string
	add := func(id string) error {
		err := s.Append(context.Background(), padded(id))
		if err == nil {
			appended = append(appended, id)
		}
		return err
	}
	for i := range 20 {
		if err := add(fmt.Sprintf("before-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	filler := testenv.FillFS(t, mnt)
	var failed int
	for i := range 10 {
		err := add(fmt.Sprintf("full-%02d", i))
		switch {
		case err == nil:
			t.Fatalf("Append on a completely full disk succeeded")
		case !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrFull):
			t.Fatalf("Append on a full disk: %v; want ENOSPC and ErrFull (dropped and counted)", err)
		default:
			failed++
		}
	}
	if st := s.Stats(); st.Dropped != uint64(failed) || st.DroppedDiskFull != uint64(failed) {
		t.Errorf("Stats: dropped %d (disk full %d), want %d", st.Dropped, st.DroppedDiskFull, failed)
	}
	if !strings.Contains(logBuf.String(), "no space left on device") {
		t.Errorf("the drops are not in the log:\n%s", logBuf.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := add(fmt.Sprintf("after-%02d", i)); err != nil {
			t.Fatalf("Append after freeing space: %v", err)
		}
	}
	// An Ack (the server answered) writes the marker once there is room.
	if err := s.Ack(appended[:1]); err != nil {
		t.Fatal(err)
	}
	appended = appended[1:]
	evs := allPending(t, s)
	if diff := cmp.Diff(appended, userIDs(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	checkDropMarker(t, evs, failed, failed)
	s.Close()
	s = mustOpen(t, dir, opt)
	evs = allPending(t, s)
	if diff := cmp.Diff(appended, userIDs(evs)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	checkDropMarker(t, evs, failed, failed)
	if n := len(spoolEvents(evs, KindSpoolDamaged)); n != 0 {
		t.Errorf("%d damage events after a full disk", n)
	}
	s.Close()
}

// checkDropMarker wants exactly one events_dropped marker among evs,
// counting want events, diskFull of them refused by a full file system.
func checkDropMarker(t *testing.T, evs []*mamoriv1.Event, want, diskFull int) {
	t.Helper()
	m := spoolEvents(evs, KindEventsDropped)
	if len(m) != 1 {
		t.Fatalf("%d events_dropped markers, want 1", len(m))
	}
	a := m[0].GetAttributes()
	if a["count"] != strconv.Itoa(want) || a["disk_full"] != strconv.Itoa(diskFull) ||
		a["count_by_kind"] != fmt.Sprintf("usb/usb_blocked=%d", want) || a["reason"] != "file system full" {
		t.Errorf("marker attributes %v; want count=%d disk_full=%d", a, want, diskFull)
	}
}

// TestDiskFullAck checks that Ack can free space on a disk so full that not
// even the ack journal can grow: acknowledging whole segments deletes them
// before anything is written.
func TestDiskFullAck(t *testing.T) {
	mnt := testenv.TmpFS(t, "256k")
	opt := testOptions(t)
	opt.MaxBytes = 512 << 10 // segments of 32 KiB; the disk still fills first
	s := mustOpen(t, mnt, opt)
	var appended []string
	for i := 0; ; i++ {
		ev := padded(fmt.Sprintf("e%04d", i))
		if err := s.Append(context.Background(), ev); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append: %v, want ENOSPC", err)
			}
			break
		}
		appended = append(appended, ev.Id)
	}
	// Acknowledge the oldest half: whole segments go, space returns.
	half := appended[:len(appended)/2]
	if err := s.Ack(half); err != nil {
		t.Fatalf("Ack on a full disk: %v", err)
	}
	mustAppend(t, s, testEvent("after", "usb"))
	s.Close()
	s = mustOpen(t, mnt, opt)
	want := append(appended[len(appended)/2:], "after")
	got := allPending(t, s)
	if diff := cmp.Diff(want, userIDs(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	checkDropMarker(t, got, 1, 1)
}

// TestDiskFullDelivery is the stall seen in the field: the server is down,
// the disk under the spool fills, the server comes back while the disk stays
// full. Every acknowledgement must stick although it covers no whole
// segment (it needs the journal: the reserve), so delivery moves on instead
// of resending the same batch every round; across a restart too; and the
// drops are reported as soon as the disk has room.
func TestDiskFullDelivery(t *testing.T) {
	mnt := testenv.TmpFS(t, "512k")
	dir := filepath.Join(mnt, "spool")
	opt := testOptions(t)
	opt.MaxBytes = 16 << 20 // one segment of 1 MiB: no Ack below deletes it
	s := mustOpen(t, dir, opt)
	var appended []string
	dropped := 0
	for i := 0; i < 2000; i++ {
		id := fmt.Sprintf("e%04d", i)
		switch err := s.Append(context.Background(), padded(id)); {
		case err == nil:
			appended = append(appended, id)
		case errors.Is(err, ErrFull) && errors.Is(err, syscall.ENOSPC):
			dropped++
		default:
			t.Fatalf("Append %s: %v", id, err)
		}
	}
	if dropped == 0 {
		t.Fatal("the file system never filled")
	}
	t.Logf("%d events stored, %d refused and counted", len(appended), dropped)
	sent := 0
	deliver := func(s *Spool, rounds int) {
		for range rounds {
			evs, err := s.Pending(25, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				return
			}
			if got := evs[0].GetId(); len(userIDs(evs)) > 0 && userIDs(evs)[0] != appended[sent] {
				t.Fatalf("round resends from %s, want %s: an acknowledgement was lost", got, appended[sent])
			}
			if err := s.Ack(idsOf(evs)); err != nil {
				t.Fatalf("Ack on a full disk: %v", err)
			}
			sent += len(userIDs(evs))
		}
	}
	deliver(s, 4) // 100 events acknowledged on a still-full disk
	if sent != 100 {
		t.Fatalf("%d delivered, want 100", sent)
	}
	s.Close()
	// The agent restarts; the disk is still full. The marker reporting the
	// refused events is written at once, from the reserve.
	s = mustOpen(t, dir, opt)
	evs := allPending(t, s)
	if got := userIDs(evs); len(got) == 0 || got[0] != appended[sent] {
		t.Fatalf("after restart pending starts at %v, want %s: acknowledgements lost", got[:min(1, len(got))], appended[sent])
	}
	checkDropMarker(t, evs, dropped, dropped)
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("after restart %d drops still unreported, want 0 (the marker holds them)", st.Dropped)
	}
	deliver(s, 1000)
	if sent != len(appended) {
		t.Fatalf("%d of %d delivered", sent, len(appended))
	}
	if st := s.Stats(); st.Dropped != 0 || st.Backlog != 0 || st.ReserveBytes != reserveSize {
		t.Errorf("after delivery: %+v, want nothing left and the reserve refilled", st)
	}
	s.Close()
}

// TestAppendReservedOnFullDisk: on a full file system, the events that must
// not be lost (logins) are taken from the reserve while ordinary ones are
// refused; when the reserve too is gone they are refused and counted.
func TestAppendReservedOnFullDisk(t *testing.T) {
	mnt := testenv.TmpFS(t, "256k")
	opt := testOptions(t)
	s := mustOpen(t, filepath.Join(mnt, "spool"), opt)
	testenv.FillFS(t, mnt)
	if err := s.Append(context.Background(), testEvent("ordinary", "usb")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v, want ENOSPC", err)
	}
	var taken int
	for i := 0; ; i++ {
		err := s.AppendReserved(context.Background(), testEvent(fmt.Sprintf("login-%03d", i), "login-mfa"))
		if err != nil {
			if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("AppendReserved %d: %v, want ErrFull and ENOSPC", i, err)
			}
			break
		}
		taken++
		if i > 10000 {
			t.Fatal("the reserve never ran out")
		}
	}
	if taken < 100 {
		t.Errorf("the reserve took %d login events, want at least 100", taken)
	}
	if st := s.Stats(); st.Dropped != 2 || st.ReserveBytes > reserveSize/2 || st.ReserveBytes == 0 {
		t.Errorf("stats %+v: want the ordinary event and the last login counted, half the reserve spent", st)
	}
	// Half the reserve stays for the spool's own bookkeeping: an Ack that
	// needs the journal still works.
	if err := s.Ack([]string{"login-000"}); err != nil {
		t.Fatalf("Ack after logins spent their share of the reserve: %v", err)
	}
	t.Logf("%d login events recorded from the reserve on a full disk", taken)
	if got := len(userIDs(allPending(t, s))); got != taken-1 {
		t.Errorf("%d events pending, want %d", got, taken-1)
	}
}
