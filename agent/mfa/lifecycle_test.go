package mfa_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func eventsOf(evs []controltest.Event, kind string) []controltest.Event {
	var out []controltest.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestTempCodes: a temporary code works once, in any case and with or
// without dashes, until it expires; not for another user; the event names
// its ID, never the code; a restart remembers the use; a new bundle that
// still holds the code (the server has not heard yet) does not revive it.
func TestTempCodes(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	tanaka := mfatest.NewUser(t, "tanaka")
	code, tc := mfatest.TempCode(t, "tanaka", c.t.Add(time.Hour))
	late, tcLate := mfatest.TempCode(t, "tanaka", c.t.Add(2*time.Hour))
	short, tcShort := mfatest.TempCode(t, "suzuki", c.t.Add(time.Minute)) // suzuki has no TOTP enrolment
	bundle := func(version string) *mamoriv1.SealedMFABundle {
		return mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{Version: version,
			Users: []*mamoriv1.MFAUserSecret{tanaka.Record}, TempCodes: []*mamoriv1.MFATempCode{tc, tcLate, tcShort}})
	}
	must(t, v.TakeBundle(t.Context(), "dev-1", bundle("g1")))
	steps := []struct {
		name string
		a    mfa.Attempt
		want mfa.Verdict
	}{
		{"another user's temp code", mfa.Attempt{User: "suzuki", Code: code}, mfa.Deny},
		{"wrong temp code", mfa.Attempt{User: "tanaka", Code: "AAAA-BBBB-CCCC"}, mfa.Deny},
		{"temp code, lower case without dashes", mfa.Attempt{User: "tanaka", Service: "sshd", RHost: "10.1.2.3",
			Code: strings.ToLower(strings.ReplaceAll(code, "-", ""))}, mfa.Allow},
		{"the same temp code again", mfa.Attempt{User: "tanaka", Code: code}, mfa.Deny},
		{"a user with only a temp code", mfa.Attempt{User: "suzuki", Code: short}, mfa.Allow},
	}
	for _, s := range steps {
		if got := v.Verify(t.Context(), s.a); got != s.want {
			t.Fatalf("%s: %v; want %v", s.name, got, s.want)
		}
	}
	evs := ev.Events()
	used := eventsOf(evs, mfa.KindTempCodeUsed)
	if len(used) != 2 || used[0].Attrs["code_id"] != tc.Id || used[0].Attrs["user"] != "tanaka" ||
		used[0].Attrs["service"] != "sshd" || used[0].Attrs["rhost"] != "10.1.2.3" || used[1].Attrs["code_id"] != tcShort.Id {
		t.Fatalf("temp_code_used events: %+v", used)
	}
	for _, e := range evs {
		for _, val := range e.Attrs {
			for _, secret := range []string{code, short, mfabundle.NormalizeCode(code), tc.Hash} {
				if strings.Contains(strings.ToUpper(val), strings.ToUpper(secret)) {
					t.Fatalf("a code or its hash in event %+v", e)
				}
			}
		}
	}
	if f := eventsOf(evs, mfa.KindFailure); len(f) != 3 || f[2].Attrs["reason"] != "code_used" {
		t.Fatalf("failures: %+v", f)
	}

	// A restart and a bundle that still holds the used code.
	must(t, v.Close())
	v = open(t, dir, c, ev)
	must(t, v.TakeBundle(t.Context(), "dev-1", bundle("g2")))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: code}); got != mfa.Deny {
		t.Fatalf("used temp code after a restart and a new bundle: %v", got)
	}
	// A bundle without the code (the policy left tanaka out for a while),
	// then one with it again: still used here.
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{Version: "g3"})))
	must(t, v.TakeBundle(t.Context(), "dev-1", bundle("g4")))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: code}); got != mfa.Deny {
		t.Fatalf("used temp code after a bundle without it and one with it: %v", got)
	}
	// Expiry, on the verifier's clock.
	c.t = c.t.Add(2*time.Hour + time.Second)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: late}); got != mfa.Deny {
		t.Fatalf("expired temp code: %v", got)
	}
	if f := eventsOf(ev.Events(), mfa.KindFailure); len(f) != 3 || f[2].Attrs["reason"] != "code_expired" {
		t.Fatalf("expired code's failure: %+v", f)
	}
}

// TestUnlockGeneration: a locked-out user stays locked until a bundle
// carries a higher unlock counter than the one applied; the same counter
// again unlocks nothing; a counter the terminal saw before the user's
// first attempt clears nothing later.
func TestUnlockGeneration(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	u := mfatest.NewUser(t, "tanaka")
	b := func(version string, unlock int64) *mamoriv1.SealedMFABundle {
		mb := &mamoriv1.MFABundle{Version: version, Users: []*mamoriv1.MFAUserSecret{u.Record}}
		if unlock > 0 {
			mb.Unlocks = []*mamoriv1.MFAUnlock{{User: "tanaka", Generation: unlock}}
		}
		return mfatest.SealBundle(t, v.PublicKey(), "dev-1", mb)
	}
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g1", 3))) // an old unlock from before
	lockOut := func() {
		t.Helper()
		for range 5 {
			v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: "000000"})
		}
		if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Locked {
			t.Fatalf("after 5 failures: %v; want locked", got)
		}
	}
	lockOut()
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g2", 3)))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Locked {
		t.Fatalf("same unlock counter: %v; want still locked", got)
	}
	ev.Events()
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g3", 4)))
	if un := eventsOf(ev.Events(), mfa.KindUnlocked); len(un) != 1 || un[0].Attrs["user"] != "tanaka" {
		t.Fatalf("mfa_unlocked events: %+v", un)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
		t.Fatalf("after the unlock: %v; want allow", got)
	}
	// A restart does not apply the same counter again.
	c.t = c.t.Add(30 * time.Second)
	lockOut()
	v = open(t, dir, c, ev)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Locked {
		t.Fatalf("restart with the applied counter: %v; want locked", got)
	}
}

// TestGrace: while grace_until is ahead, a user without factors named by
// the bundle (or "*") logs in with any answer, recorded as
// mfa_grace_login and listed by GraceUsers until the user is enrolled or
// grace ends;
// enrolled users still need their code; after grace_until, or when the
// bundle does not name the user, such a login is refused.
func TestGrace(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, t.TempDir(), c, ev)
	tanaka := mfatest.NewUser(t, "tanaka")
	until := c.t.Add(24 * time.Hour)
	b := func(version string, graceUsers []string, users ...mfatest.User) *mamoriv1.SealedMFABundle {
		mb := &mamoriv1.MFABundle{Version: version, GraceUntil: timestamppb.New(until), GraceUsers: graceUsers}
		for _, u := range users {
			mb.Users = append(mb.Users, u.Record)
		}
		return mfatest.SealBundle(t, v.PublicKey(), "dev-1", mb)
	}
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g1", []string{"suzuki"}, tanaka)))
	if g := v.Grace(); !g.Active || !g.Until.Equal(until) || len(g.Logins) != 0 {
		t.Fatalf("grace before any login: %+v", g)
	}
	steps := []struct {
		name string
		a    mfa.Attempt
		want mfa.Verdict
	}{
		{"named user without factors", mfa.Attempt{User: "suzuki", Service: "login", Code: ""}, mfa.Allow},
		{"user not named", mfa.Attempt{User: "sato", Code: "123456"}, mfa.Deny},
		{"enrolled user with a wrong code", mfa.Attempt{User: "tanaka", Code: "000000"}, mfa.Deny},
	}
	for _, s := range steps {
		if got := v.Verify(t.Context(), s.a); got != s.want {
			t.Fatalf("%s: %v; want %v", s.name, got, s.want)
		}
	}
	if gl := eventsOf(ev.Events(), mfa.KindGraceLogin); len(gl) != 1 || gl[0].Attrs["user"] != "suzuki" || gl[0].Attrs["grace_until"] == "" {
		t.Fatalf("grace login events: %+v", gl)
	}
	if gu := v.GraceUsers(); !slices.Equal(gu, []string{"suzuki"}) {
		t.Fatalf("GraceUsers %v; want [suzuki]", gu)
	}
	// "*": every user without factors.
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g2", []string{"*"}, tanaka)))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "sato"}); got != mfa.Allow {
		t.Fatalf("grace for every user: %v", got)
	}
	// suzuki enrols: no longer a grace user, and needs the code.
	suzuki := mfatest.NewUser(t, "suzuki")
	must(t, v.TakeBundle(t.Context(), "dev-1", b("g3", []string{"*"}, tanaka, suzuki)))
	if gu := v.GraceUsers(); !slices.Equal(gu, []string{"sato"}) {
		t.Fatalf("GraceUsers after suzuki enrolled: %v; want [sato]", gu)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "suzuki", Code: "000000"}); got != mfa.Deny {
		t.Fatalf("enrolled suzuki with a wrong code under grace: %v", got)
	}
	c.t = until
	if got := v.Verify(t.Context(), mfa.Attempt{User: "sato"}); got != mfa.Deny {
		t.Fatalf("after grace_until: %v", got)
	}
	if g := v.Grace(); g.Active || len(g.Logins) != 0 || len(v.GraceUsers()) != 0 {
		t.Fatalf("grace at its end: %+v; want inactive, no logins listed", g)
	}
}

// TestMethodsAndRecoveryID: a policy that allows only tpm-pin refuses
// TOTP codes (recovery codes still work), and a used recovery code's event
// carries its ID, which the server can match, never the code.
func TestMethodsAndRecoveryID(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, t.TempDir(), c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{
		Version: "g1", Users: []*mamoriv1.MFAUserSecret{u.Record}, Methods: []string{"tpm-pin"}})))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("TOTP while only tpm-pin is allowed: %v", got)
	}
	if !slices.Equal(v.Methods(), []string{"tpm-pin"}) {
		t.Fatalf("Methods %v", v.Methods())
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.RecoveryCodes[2]}); got != mfa.Allow {
		t.Fatalf("recovery code: %v", got)
	}
	evs := ev.Events()
	if f := eventsOf(evs, mfa.KindFailure); len(f) != 1 || f[0].Attrs["reason"] != "method_not_allowed" {
		t.Fatalf("failure: %+v", f)
	}
	ru := eventsOf(evs, mfa.KindRecoveryUsed)
	want := mfabundle.CodeID(u.Record.RecoveryCodeHashes[2])
	if len(ru) != 1 || ru[0].Attrs["code_id"] != want {
		t.Fatalf("recovery event %+v; want code_id %s", ru, want)
	}
}

// TestPINRefusedWhenPolicyLeavesItOut: a policy that names only totp
// refuses the PIN path before the TPM is asked (no PIN keys configured
// here, so reaching the TPM would be an error of another kind).
func TestPINRefusedWhenPolicyLeavesItOut(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, t.TempDir(), c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{
		Version: "g1", Users: []*mamoriv1.MFAUserSecret{u.Record}, Methods: []string{"totp"}})))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: "739154", Method: mfa.MethodPIN}); got != mfa.Deny {
		t.Fatalf("PIN while only totp is allowed: %v", got)
	}
	if f := eventsOf(ev.Events(), mfa.KindFailure); len(f) != 1 || f[0].Attrs["reason"] != "method_not_allowed" || f[0].Attrs["method"] != "pin" {
		t.Fatalf("failure: %+v", f)
	}
}

// TestReportBreakGlass: uses in PATH.used that the agent did not report
// itself are reported once, the first versions' hash-only lines included;
// the agent's own recovery logins are not reported twice; a torn line is
// skipped.
func TestReportBreakGlass(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Service: "login", Code: u.RecoveryCodes[0]}); got != mfa.Allow {
		t.Fatalf("recovery code: %v", got)
	}
	h1 := mfabundle.HashRecoveryCode(u.Record.RecoverySalt, u.RecoveryCodes[1])
	h2 := mfabundle.HashRecoveryCode(u.Record.RecoverySalt, u.RecoveryCodes[2])
	f, err := os.OpenFile(filepath.Join(dir, mfa.BreakGlassFile+".used"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(h1 + " tanaka sshd 192.0.2.9 1795521605\n" + h2 + "\n" + "0123abc")
	must(t, err)
	must(t, f.Close())

	v.ReportBreakGlass(t.Context())
	v2 := open(t, dir, c, ev) // a restart reports nothing again
	v2.ReportBreakGlass(t.Context())
	var got []map[string]string
	for _, e := range eventsOf(ev.Events(), mfa.KindRecoveryUsed) {
		got = append(got, e.Attrs)
	}
	if len(got) != 3 {
		t.Fatalf("%d recovery events; want 3 (own login, two break-glass uses): %+v", len(got), got)
	}
	if got[0]["via"] != "" || got[0]["service"] != "login" {
		t.Errorf("own login event: %+v", got[0])
	}
	if b := got[1]; b["via"] != "break-glass" || b["user"] != "tanaka" || b["service"] != "sshd" || b["rhost"] != "192.0.2.9" ||
		b["used_at"] != time.Unix(1795521605, 0).UTC().Format(time.RFC3339) || b["code_id"] != mfabundle.CodeID(h1) {
		t.Errorf("break-glass event: %+v", b)
	}
	if b := got[2]; b["via"] != "break-glass" || b["code_id"] != mfabundle.CodeID(h2) || b["used_at"] != "" {
		t.Errorf("hash-only line's event: %+v", b)
	}
}
