package mfa

import (
	"bytes"
	"testing"
)

// FuzzJournal: the snapshot and journal readers never panic, and a
// journal that replays ends on a record boundary (good ≤ len, and the
// prefix re-reads to the same result).
func FuzzJournal(f *testing.F) {
	f.Add([]byte(`{"seq":3,"users":{"tanaka":{"last_step":5}}}`), []byte(`{"seq":4,"user":"tanaka","state":{"last_step":6}}`+"\n"))
	f.Add([]byte(`{"tanaka":{"last_step":5}}`), []byte(`{"seq":1,"user":"a","state":{}}`+"\n"+`{"seq":2,"user":"a","sta`))
	f.Add([]byte(`{"seq":{"last_step":1}}`), []byte("garbage\n"))
	f.Add([]byte(`{}`), []byte(`{"seq":1,"user":"a","state":{"used_temp":{"x":"2026-01-01T00:00:00Z"}}}`+"\n"+`{"seq":1,"user":"a","state":{}}`+"\n"))
	f.Fuzz(func(t *testing.T, snapJSON, journal []byte) {
		snap, err := readSnapshot(snapJSON)
		if err != nil {
			return
		}
		if snap.Users == nil {
			t.Fatal("snapshot without a users map")
		}
		good, n, seq, err := replayJournal(bytes.NewReader(journal), snap)
		if err != nil {
			return
		}
		if good < 0 || good > int64(len(journal)) || seq < snap.Seq || n < 0 {
			t.Fatalf("good %d of %d, seq %d (snapshot %d), n %d", good, len(journal), seq, snap.Seq, n)
		}
		if good > 0 && journal[good-1] != '\n' {
			t.Fatalf("prefix of %d bytes does not end a record", good)
		}
	})
}
