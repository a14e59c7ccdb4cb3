package spool

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// writeSpool makes a closed spool in dir holding six one-event records
// e0000..e0005 in one segment and returns the segment's path and contents.
func writeSpool(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events(ids("e", 0, 6), "usb") {
		mustAppend(t, s, ev)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segPaths(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	return segs[0], data
}

func TestCorruption(t *testing.T) {
	garbage := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name string
		// damage changes the directory; seg and data describe the spool
		// writeSpool made.
		damage      func(t *testing.T, dir, seg string, data []byte)
		want        []string // user event ids after Open
		wantDamage  map[string]string
		wantCorrupt []string
	}{
		{
			name:   "intact",
			damage: func(*testing.T, string, string, []byte) {},
			want:   ids("e", 0, 6),
		},
		{
			name: "last record truncated",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, seg, data[:len(data)-5])
			},
			want: ids("e", 0, 5),
		},
		{
			name: "bytes overwritten in the middle",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				r := decode(data).records[2]
				copy(data[r.off+20:], "XXXXXXXX")
				write(t, seg, data)
			},
			want:        []string{"e0000", "e0001", "e0003", "e0004", "e0005"},
			wantDamage:  map[string]string{"file": "seg-0000000000000001.log", "records_lost_estimate": "1"},
			wantCorrupt: []string{"seg-0000000000000001.log.corrupt"},
		},
		{
			name: "garbage appended",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, seg, cat(data, garbage[1:100]))
			},
			want:        ids("e", 0, 6),
			wantDamage:  map[string]string{"file": "seg-0000000000000001.log", "bytes": "99"},
			wantCorrupt: []string{"seg-0000000000000001.log.corrupt"},
		},
		{
			name: "pure garbage segment",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, filepath.Join(dir, segName(7)), garbage)
			},
			want:        ids("e", 0, 6),
			wantDamage:  map[string]string{"file": "seg-0000000000000007.log", "bytes": "4096", "records_lost_estimate": "16"},
			wantCorrupt: []string{"seg-0000000000000007.log.corrupt"},
		},
		{
			name: "empty segment",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, filepath.Join(dir, segName(9)), nil)
			},
			want: ids("e", 0, 6),
		},
		{
			name: "every segment empty",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, seg, nil)
			},
		},
		{
			name: "garbage journal",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, filepath.Join(dir, metaName), garbage[:500])
			},
			want:        ids("e", 0, 6),
			wantDamage:  map[string]string{"file": "meta.log", "bytes": "500"},
			wantCorrupt: []string{"meta.log.corrupt"},
		},
		{
			name: "unknown files and odd names",
			damage: func(t *testing.T, dir, seg string, data []byte) {
				write(t, filepath.Join(dir, "README"), []byte("hello"))
				write(t, filepath.Join(dir, "seg-xyz.log"), garbage)
				write(t, filepath.Join(dir, ".meta.log.tmp123"), garbage)
				if err := os.Mkdir(filepath.Join(dir, segName(5)), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			want: ids("e", 0, 6),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			seg, data := writeSpool(t, dir)
			tt.damage(t, dir, seg, data)

			s := mustOpen(t, dir, testOptions(t))
			evs := allPending(t, s)
			if diff := cmp.Diff(tt.want, userIDs(evs)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			dmg := spoolEvents(evs, KindSpoolDamaged)
			switch {
			case tt.wantDamage == nil && len(dmg) > 0:
				t.Errorf("unexpected damage events %v", dmg)
			case tt.wantDamage != nil && len(dmg) != 1:
				t.Fatalf("damage events %v, want one", dmg)
			case tt.wantDamage != nil:
				got := dmg[0].GetAttributes()
				for k, v := range tt.wantDamage {
					if got[k] != v {
						t.Errorf("damage attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
					}
				}
				if n, _ := strconv.Atoi(got["bytes"]); n <= 0 {
					t.Errorf("damage bytes = %q", got["bytes"])
				}
			}
			if diff := cmp.Diff(tt.wantCorrupt, corruptFiles(t, dir)); diff != "" {
				t.Errorf("corrupt copies (-want +got):\n%s", diff)
			}
			for _, name := range tt.wantCorrupt {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Error(err)
				}
			}

			// Repaired: a second open reports nothing new, and the spool
			// works.
			mustAppend(t, s, testEvent("after", "usb"))
			s.Close()
			s = mustOpen(t, dir, testOptions(t))
			evs2 := allPending(t, s)
			if got := spoolEvents(evs2, KindSpoolDamaged); len(got) != len(dmg) {
				t.Errorf("after reopen %d damage events, want %d", len(got), len(dmg))
			}
			if diff := cmp.Diff(append(tt.want, "after"), userIDs(evs2)); diff != "" {
				t.Errorf("after reopen (-want +got):\n%s", diff)
			}
			if err := s.Ack(append(userIDs(evs2), idsOf(dmg)...)); err != nil {
				t.Fatal(err)
			}
			if s.Len() != 0 {
				t.Errorf("Len = %d after acking everything", s.Len())
			}
		})
	}
}

func TestOpenUnusableDir(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "spool")
	write(t, file, nil) // a zero-length file where the directory should be
	if _, err := Open(file, testOptions(t)); err == nil {
		t.Error("Open on a regular file succeeded")
	} else {
		t.Logf("error: %v", err)
	}
	if _, err := Open(filepath.Join(file, "sub"), testOptions(t)); err == nil {
		t.Error("Open below a regular file succeeded")
	}
	// A fresh, empty directory is fine, as is one that already exists empty.
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, empty, testOptions(t))
	if s.Len() != 0 {
		t.Errorf("Len = %d", s.Len())
	}
	created := filepath.Join(base, "a", "b")
	mustOpen(t, created, testOptions(t))
	if fi, err := os.Stat(created); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

// TestCorruptionWhileOpen damages a record under a running spool: Pending
// reports it instead of returning wrong events, and reopening repairs it.
func TestCorruptionWhileOpen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t))
	for _, ev := range events(ids("e", 0, 3), "usb") {
		mustAppend(t, s, ev)
	}
	seg := segPaths(t, dir)[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(data).records[1]
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("!!"), r.off+int64(r.n)-2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := s.Pending(0, 0); err == nil {
		t.Error("Pending over a damaged record succeeded")
	}
	s.Close()
	s = mustOpen(t, dir, testOptions(t))
	evs := allPending(t, s)
	if diff := cmp.Diff([]string{"e0000", "e0002"}, userIDs(evs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(spoolEvents(evs, KindSpoolDamaged)) != 1 {
		t.Errorf("want one damage event")
	}
}

// TestCorruptCopiesBounded checks that repeated damage does not fill the
// disk with corrupt copies.
func TestCorruptCopiesBounded(t *testing.T) {
	dir := t.TempDir()
	for i := range maxCorruptFiles + 4 {
		write(t, filepath.Join(dir, segName(uint64(100+i))), []byte("garbage garbage garbage"))
		s, err := Open(dir, testOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if n := len(corruptFiles(t, dir)); n > maxCorruptFiles {
		t.Errorf("%d corrupt copies kept, want at most %d", n, maxCorruptFiles)
	}
}

func TestAppendContinuesAfterTornTail(t *testing.T) {
	dir := t.TempDir()
	seg, data := writeSpool(t, dir)
	write(t, seg, data[:len(data)-1])
	s := mustOpen(t, dir, testOptions(t))
	mustAppend(t, s, testEvent("new", "usb"))
	if err := s.Append(context.Background(), testEvent("new2", "usb")); err != nil {
		t.Fatal(err)
	}
	want := append(ids("e", 0, 5), "new", "new2")
	if diff := cmp.Diff(want, userIDs(allPending(t, s))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func idsOf(evs []*mamoriv1.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.GetId())
	}
	return out
}
