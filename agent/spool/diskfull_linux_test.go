package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestDiskFull runs the spool on a 256 KiB tmpfs: when the file system is
// full, Append fails with ENOSPC (never a silent success and never
// ErrFull), and once space is freed appends work again with nothing lost.
func TestDiskFull(t *testing.T) {
	testenv.RequireRoot(t)
	mount := testenv.LookPath(t, "mount", "mount")
	mnt := t.TempDir()
	if out, err := exec.Command(mount, "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "spool")
	opt := testOptions(t)
	opt.MaxBytes = 16 << 20 // larger than the file system: the disk fills first
	s := mustOpen(t, dir, opt)

	var appended []string
	add := func(id string) error {
		ev := testEvent(id, "usb")
		ev.Attributes["pad"] = strings.Repeat("p", 900)
		err := s.Append(context.Background(), ev)
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
	// Another program fills the disk.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	var failed int
	for i := range 10 {
		err := add(fmt.Sprintf("full-%02d", i))
		switch {
		case err == nil:
			// The last partial page may still take a small record.
		case errors.Is(err, ErrFull):
			t.Fatalf("Append on a full disk: %v; want ENOSPC, not ErrFull", err)
		case !errors.Is(err, syscall.ENOSPC):
			t.Fatalf("Append on a full disk: %v; want ENOSPC", err)
		default:
			failed++
			if failed == 1 {
				t.Logf("error: %v", err)
			}
		}
	}
	if failed == 0 {
		t.Fatal("no Append failed on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := add(fmt.Sprintf("after-%02d", i)); err != nil {
			t.Fatalf("Append after freeing space: %v", err)
		}
	}
	if diff := cmp.Diff(appended, userIDs(allPending(t, s))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	s.Close()
	s = mustOpen(t, dir, opt)
	evs := allPending(t, s)
	if diff := cmp.Diff(appended, userIDs(evs)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if n := len(spoolEvents(evs, KindSpoolDamaged)); n != 0 {
		t.Errorf("%d damage events after a full disk", n)
	}
	if err := s.Ack(userIDs(evs)); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestDiskFullAck checks that Ack can free space on a disk so full that not
// even the ack journal can grow: acknowledging whole segments deletes them
// before anything is written. (An Ack that covers no whole segment cannot
// be recorded on a full disk; it fails and may be retried.)
func TestDiskFullAck(t *testing.T) {
	testenv.RequireRoot(t)
	mount := testenv.LookPath(t, "mount", "mount")
	mnt := t.TempDir()
	if out, err := exec.Command(mount, "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	opt := testOptions(t)
	opt.MaxBytes = 512 << 10 // segments of 32 KiB; the disk still fills first
	s := mustOpen(t, mnt, opt)
	var appended []string
	for i := 0; ; i++ {
		ev := testEvent(fmt.Sprintf("e%04d", i), "usb")
		ev.Attributes["pad"] = strings.Repeat("p", 900)
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
	if diff := cmp.Diff(want, userIDs(allPending(t, s))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
