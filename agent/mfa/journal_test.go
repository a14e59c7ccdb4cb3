package mfa_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
)

// TestJournal: accepted codes survive restarts through the journal and
// through compaction; a torn last record is dropped (its login was never
// allowed); a damaged record in the middle refuses to start; a crash
// between a snapshot and emptying the journal replays nothing older; the
// first versions' bare-map snapshot still loads.
func TestJournal(t *testing.T) {
	dir := tempDir(t)
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))

	// 600 logins, one per step: more than one compaction's worth.
	for i := range 600 {
		if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
			t.Fatalf("login %d: %v", i, got)
		}
		c.t = c.t.Add(30 * time.Second)
	}
	last := c.t.Add(-30 * time.Second)
	lines := func() int {
		b, err := os.ReadFile(filepath.Join(dir, "verify.log"))
		must(t, err)
		return strings.Count(string(b), "\n")
	}
	if n := lines(); n == 0 || n >= 600 {
		t.Fatalf("journal has %d records after 600 logins; compaction should keep it under 512", n)
	}
	replayed := func(v *mfa.Verifier) mfa.Verdict {
		return v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(last)})
	}
	c.t = last // the last accepted code is still in its window
	must(t, v.Close())
	v2 := open(t, dir, c, ev)
	if got := replayed(v2); got != mfa.Deny {
		t.Fatalf("last code replayed after a restart: %v", got)
	}

	// A torn append: Open drops it and the journal goes on after it.
	journal := filepath.Join(dir, "verify.log")
	appendTo := func(s string) {
		f, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteString(s)
		must(t, err)
		must(t, f.Close())
	}
	must(t, v2.Close())
	appendTo(`{"seq":999999,"user":"tanaka","state":{"last_st`)
	v3 := open(t, dir, c, ev)
	if got := replayed(v3); got != mfa.Deny {
		t.Fatalf("after a torn record: replay %v", got)
	}
	c.t = c.t.Add(30 * time.Second)
	if got := v3.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
		t.Fatalf("login after a torn record was cut: %v", got)
	}
	if b, _ := os.ReadFile(journal); strings.Contains(string(b), "999999") {
		t.Fatal("torn record still in the journal")
	}

	// A whole line that does not parse is damage, not a torn append.
	appendTo("garbage\n")
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events, cfg.Now = dir, ev, c.now
	if _, err := mfa.Open(cfg, "dev-1"); err == nil || !strings.Contains(err.Error(), "verify.log is damaged") {
		t.Fatalf("damaged journal: %v", err)
	}
}

// TestJournalOldRecordsAfterSnapshot: records at or below the snapshot's
// sequence (a crash after the snapshot, before the journal was emptied)
// are skipped, so an older LastStep cannot come back.
func TestJournalOldRecordsAfterSnapshot(t *testing.T) {
	dir := filepath.Join(tempDir(t), "mfa")
	must(t, os.MkdirAll(dir, 0o700))
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	step := c.t.Unix() / 30
	snap := `{"seq":7,"users":{"tanaka":{"last_step":` + itoa(step) + `}}}`
	must(t, os.WriteFile(filepath.Join(dir, "verify.json"), []byte(snap), 0o600))
	old := `{"seq":6,"user":"tanaka","state":{"last_step":` + itoa(step-10) + `}}` + "\n"
	must(t, os.WriteFile(filepath.Join(dir, "verify.log"), []byte(old), 0o600))
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("code of a step the snapshot records as used: %v", got)
	}

	// The first versions wrote the bare users map.
	dir2 := filepath.Join(tempDir(t), "mfa")
	must(t, os.MkdirAll(dir2, 0o700))
	must(t, os.WriteFile(filepath.Join(dir2, "verify.json"), []byte(`{"tanaka":{"last_step":`+itoa(step)+`}}`), 0o600))
	v2 := open(t, dir2, c, ev)
	must(t, v2.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v2.PublicKey(), "dev-1", "g1", u)))
	if got := v2.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("old-format snapshot not honoured: %v", got)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestJournalUnknownRecords: the unknown-user aggregate's records load;
// a record that is both (or neither) a user's and the aggregate's is
// damage, not a torn append.
func TestJournalUnknownRecords(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	for _, tc := range []struct {
		name, journal string
		damaged       bool
		want          string // in the snapshot Close writes
	}{
		{"aggregate", `{"seq":1,"unknown":true,"state":{"failures":7}}` + "\n", false, `"unknown":{"failures":7}`},
		{"aggregate with a name", `{"seq":1,"user":"x","unknown":true,"state":{"failures":7}}` + "\n", true, ""},
		{"no name, not the aggregate", `{"seq":1,"user":"","state":{"failures":7}}` + "\n", true, ""},
		{"aggregate without state", `{"seq":1,"unknown":true}` + "\n", true, ""},
		{"aggregate, torn", `{"seq":1,"unknown":true,"state":{"fail`, false, `"unknown":{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tempDir(t), "mfa")
			must(t, os.MkdirAll(dir, 0o700))
			must(t, os.WriteFile(filepath.Join(dir, "verify.log"), []byte(tc.journal), 0o600))
			cfg := mfa.DefaultConfig()
			cfg.Dir, cfg.Events, cfg.Now = dir, &controltest.Emitter{}, c.now
			v, err := mfa.Open(cfg, "dev-1")
			if tc.damaged {
				if err == nil || !strings.Contains(err.Error(), "verify.log is damaged") {
					t.Fatalf("want damaged, got %v", err)
				}
				return
			}
			must(t, err)
			must(t, v.Close())
			b, err := os.ReadFile(filepath.Join(dir, "verify.json"))
			must(t, err)
			if !strings.Contains(string(b), tc.want) {
				t.Fatalf("snapshot %s, want %s", b, tc.want)
			}
		})
	}
}
