package mfa

import (
	"bytes"
	"encoding/hex"
	"strings"
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
	f.Add([]byte(`{"seq":3,"users":{},"unknown":{"failures":7},"clean":true}`), []byte(`{"seq":4,"unknown":true,"state":{"failures":8}}`+"\n"+`{"seq":5,"user":"","state":{}}`+"\n"+`{"seq":6,"user":"a","unknown":true,"state":{}}`+"\n"))
	f.Fuzz(func(t *testing.T, snapJSON, journal []byte) {
		snap, err := readSnapshot(snapJSON)
		if err != nil {
			return
		}
		if snap.Users == nil {
			t.Fatal("snapshot without a users map")
		}
		_, hadNoName := snap.Users[""] // the snapshot's own, if any
		good, n, seq, err := replayJournal(bytes.NewReader(journal), &snap)
		if err != nil {
			return
		}
		if good < 0 || good > int64(len(journal)) || seq < snap.Seq || n < 0 {
			t.Fatalf("good %d of %d, seq %d (snapshot %d), n %d", good, len(journal), seq, snap.Seq, n)
		}
		if _, ok := snap.Users[""]; ok && !hadNoName {
			t.Fatal("a record without a user name went into the users map")
		}
		if good > 0 && journal[good-1] != '\n' {
			t.Fatalf("prefix of %d bytes does not end a record", good)
		}
	})
}

// FuzzParseUsed: the break-glass used-code list (written by the agent and
// by pam_mamori.c) never panics the reader, and what it returns is a hex
// SHA-256 per entry.
func FuzzParseUsed(f *testing.F) {
	h := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	f.Add([]byte(h + " tanaka sshd 192.0.2.9 1795521605\n" + h + "\n"))
	f.Add([]byte(h + " tanaka - - -5\n" + h[:10]))
	f.Add([]byte("\x00\n \n" + strings.Repeat("a", 64) + " u s r 99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, u := range parseUsed(data) {
			if len(u.Hash) != 64 || strings.ToLower(u.Hash) != u.Hash {
				t.Fatalf("entry %+v", u)
			}
			if _, err := hex.DecodeString(u.Hash); err != nil {
				t.Fatalf("entry %+v: %v", u, err)
			}
		}
	})
}
