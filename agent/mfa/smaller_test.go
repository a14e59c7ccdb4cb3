package mfa_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
)

// A replayed TOTP code is refused with reason=code_used in its event
// (issue #14 item 10); a wrong one without.
func TestReplayReasonCodeUsed(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, filepath.Join(t.TempDir(), "mfa"), c, ev)
	tanaka := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", tanaka)))
	ev.Events()
	code := tanaka.Code(c.t)
	for _, want := range []mfa.Verdict{mfa.Allow, mfa.Deny} {
		if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: code}); got != want {
			t.Fatalf("%v; want %v", got, want)
		}
	}
	wrong := "000000"
	if wrong == code {
		wrong = "111111"
	}
	v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: wrong})
	evs := ev.Events()
	if kinds(evs) != "mfa_success,mfa_failure,mfa_failure" || evs[1].Attrs["reason"] != "code_used" || evs[2].Attrs["reason"] != "" {
		t.Fatalf("events %+v", evs)
	}
}

// A right code found after the asker gave up (pam_mamori.so's timeout
// passed while the agent was frozen) is recorded as mfa_failure
// reason=timed_out, never mfa_success, and is spent: it does not work
// again (issue #14 item 10). A recovery code likewise, with its code_id,
// so the server consumes it, and it is not reported again as a
// break-glass use.
func TestTimedOutLoginNotRecordedAsSuccess(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, filepath.Join(t.TempDir(), "mfa"), c, ev)
	tanaka := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", tanaka)))
	ev.Events()
	gone := func() bool { return true }
	code := tanaka.Code(c.t)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: code, Gone: gone}); got != mfa.Deny {
		t.Fatalf("asker gone: %v; want deny", got)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: code}); got != mfa.Deny {
		t.Fatalf("the timed-out code again: %v; want deny (spent)", got)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.RecoveryCodes[2], Gone: gone}); got != mfa.Deny {
		t.Fatalf("recovery code, asker gone: %v", got)
	}
	v.ReportBreakGlass(t.Context())
	evs := ev.Events()
	if kinds(evs) != "mfa_failure,mfa_failure,mfa_failure" {
		t.Fatalf("events %s", kinds(evs))
	}
	if evs[0].Attrs["reason"] != "timed_out" || evs[1].Attrs["reason"] != "code_used" ||
		evs[2].Attrs["reason"] != "timed_out" || evs[2].Attrs["method"] != "recovery" || len(evs[2].Attrs["code_id"]) != 16 {
		t.Fatalf("events %+v", evs)
	}
	// Still there: a success.
	c.t = c.t.Add(30 * time.Second)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t), Gone: func() bool { return false }}); got != mfa.Allow {
		t.Fatalf("asker waiting: %v", got)
	}
}
