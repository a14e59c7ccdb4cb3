package spool

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

var testTime = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

func testEvent(id, control string) *mamoriv1.Event {
	return &mamoriv1.Event{
		Id:         id,
		Time:       timestamppb.New(testTime),
		Control:    control,
		Kind:       "usb_blocked",
		Attributes: map[string]string{"device": "0781:5581 SanDisk Ultra"},
	}
}

// testOptions gives deterministic ids for the spool's own events.
func testOptions(t testing.TB) Options {
	n := 0
	return Options{
		Now:    func() time.Time { return testTime },
		NewID:  func() string { n++; return fmt.Sprintf("spool-%d", n) },
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func mustOpen(t testing.TB, dir string, opt Options) *Spool {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spool, evs ...*mamoriv1.Event) {
	t.Helper()
	if err := s.Append(context.Background(), evs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// allPending returns every pending event.
func allPending(t testing.TB, s *Spool) []*mamoriv1.Event {
	t.Helper()
	evs, err := s.Pending(0, 0)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return evs
}

// userIDs returns the ids of pending events not made by the spool.
func userIDs(evs []*mamoriv1.Event) []string {
	var ids []string
	for _, ev := range evs {
		if ev.GetControl() != AgentControl {
			ids = append(ids, ev.GetId())
		}
	}
	return ids
}

// spoolEvents returns the spool's own pending events of kind.
func spoolEvents(evs []*mamoriv1.Event, kind string) []*mamoriv1.Event {
	var out []*mamoriv1.Event
	for _, ev := range evs {
		if ev.GetControl() == AgentControl && ev.GetKind() == kind {
			out = append(out, ev)
		}
	}
	return out
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%04d", prefix, i))
	}
	return out
}

func events(idList []string, control string) []*mamoriv1.Event {
	var out []*mamoriv1.Event
	for _, id := range idList {
		out = append(out, testEvent(id, control))
	}
	return out
}

// dirFiles lists the files in dir, sorted, with their sizes.
func dirFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, de := range ents {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = fi.Size()
	}
	return out
}

func segPaths(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for name := range dirFiles(t, dir) {
		if _, ok := parseSegName(name); ok {
			out = append(out, filepath.Join(dir, name))
		}
	}
	sort.Strings(out)
	return out
}

func corruptFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for name := range dirFiles(t, dir) {
		if strings.HasSuffix(name, corruptSuffix) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
