package mfa_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
)

// TestReportPINKeys: a PIN key that appears, changes or goes away is an
// event once, with its hash, whoever changed the files; a restart reports
// nothing again; an event that cannot be written is reported next round;
// a damaged report file makes every key reported again, never one missed.
func TestReportPINKeys(t *testing.T) {
	dir := t.TempDir()
	pinDir := filepath.Join(dir, "pin")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	openV := func() *mfa.Verifier {
		cfg := mfa.DefaultConfig()
		cfg.Dir, cfg.Events, cfg.Now, cfg.PINs = filepath.Join(dir, "mfa"), ev, c.now, &mfa.PINKeys{Dir: pinDir}
		v, err := mfa.Open(cfg, "dev-1")
		must(t, err)
		return v
	}
	hash := func(b string) string { s := sha256.Sum256([]byte(b)); return hex.EncodeToString(s[:]) }
	put := func(user, blob string) {
		must(t, os.MkdirAll(pinDir, 0o700))
		must(t, os.WriteFile(filepath.Join(pinDir, user+".key"), []byte(blob), 0o600))
	}
	want := func(what string, kinds ...string) []controltest.Event {
		t.Helper()
		var got []controltest.Event
		for _, e := range ev.Events() {
			if e.Kind == mfa.KindPINEnrolled || e.Kind == mfa.KindPINRemoved {
				got = append(got, e)
			}
		}
		if kinds == nil && len(got) == 0 {
			return nil
		}
		if k := kinds; len(got) != len(k) {
			t.Fatalf("%s: %d events %+v, want %v", what, len(got), got, k)
		}
		for i, k := range kinds {
			if got[i].Kind != k || got[i].Control != "login-mfa" {
				t.Fatalf("%s: event %d %+v, want %s", what, i, got[i], k)
			}
		}
		return got
	}

	v := openV()
	v.ReportPINKeys(t.Context())
	want("no keys")

	put("tanaka", "blob-1")
	put("suzuki", "blob-2")
	must(t, os.WriteFile(filepath.Join(pinDir, "not a user.key"), []byte("x"), 0o600)) // not a key name
	v.ReportPINKeys(t.Context())
	got := want("two enrolments", mfa.KindPINEnrolled, mfa.KindPINEnrolled)
	if got[0].Attrs["user"] != "suzuki" || got[1].Attrs["user"] != "tanaka" || got[1].Attrs["key_sha256"] != hash("blob-1") {
		t.Fatalf("enrolments: %+v", got)
	}
	v.ReportPINKeys(t.Context())
	openV().ReportPINKeys(t.Context()) // a restart
	want("nothing new")

	// Replaced by hand, and one removed, while the spool is full: nothing
	// is lost, it is reported when it can be.
	put("tanaka", "blob-3")
	must(t, os.Remove(filepath.Join(pinDir, "suzuki.key")))
	ev.Err = errors.New("spool full")
	v.ReportPINKeys(t.Context())
	ev.Err = nil
	want("spool full")
	v.ReportPINKeys(t.Context())
	got = want("after the spool drained", mfa.KindPINEnrolled, mfa.KindPINRemoved)
	if got[0].Attrs["replaced"] != hash("blob-1") || got[0].Attrs["key_sha256"] != hash("blob-3") ||
		got[1].Attrs["user"] != "suzuki" || got[1].Attrs["key_sha256"] != hash("blob-2") {
		t.Fatalf("change and removal: %+v", got)
	}

	// A damaged report file: every key present is reported again.
	must(t, os.WriteFile(pinDir+".reported", []byte("{garbage"), 0o600))
	v.ReportPINKeys(t.Context())
	if got := want("damaged report file", mfa.KindPINEnrolled); got[0].Attrs["user"] != "tanaka" {
		t.Fatalf("after damage: %+v", got)
	}
	// An oversized key file is not read; nothing is reported until it is fixed.
	put("sato", string(make([]byte, 100<<10)))
	v.ReportPINKeys(t.Context())
	want("oversized key file")
}
