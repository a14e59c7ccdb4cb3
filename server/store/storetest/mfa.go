package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/server/store"
)

// testMFAUsers: users are stored in new generations, listed by name with
// every field intact; a second enrolment is ErrConflict and changes
// nothing; replace overwrites and bumps the generation.
func testMFAUsers(t *testing.T, st store.Store) {
	ctx := t.Context()
	g, err := st.MFAGeneration(ctx)
	must(t, err)
	if g != 0 {
		t.Fatalf("generation of an empty store = %d; want 0", g)
	}
	if us, err := st.MFAUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("MFAUsers of an empty store = %v, %v", us, err)
	}
	tanaka := store.MFAUser{User: "tanaka", SealedSecret: []byte{1, 2, 3}, Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
		RecoverySalt: []byte("salt"), RecoveryHashes: []string{"aa", "bb"}, CreatedAt: t0, CreatedBy: "op-1"}
	suzuki := tanaka
	suzuki.User, suzuki.SealedSecret, suzuki.RecoveryHashes = "suzuki", []byte{9}, nil
	g1, err := st.PutMFAUser(ctx, tanaka, false)
	must(t, err)
	g2, err := st.PutMFAUser(ctx, suzuki, false)
	must(t, err)
	if g1 != 1 || g2 != 2 {
		t.Fatalf("generations %d, %d; want 1, 2", g1, g2)
	}
	again := tanaka
	again.SealedSecret = []byte{7}
	if _, err := st.PutMFAUser(ctx, again, false); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second enrolment without replace: %v; want ErrConflict", err)
	}
	if g, _ := st.MFAGeneration(ctx); g != 2 {
		t.Fatalf("generation after a refused enrolment = %d; want 2", g)
	}
	tanaka.CreatedAt, suzuki.CreatedAt = us(t0), us(t0)
	tanaka.Generation, suzuki.Generation = 1, 2
	tanaka.Method, suzuki.Method = store.MFAMethodTOTP, store.MFAMethodTOTP // the default when none is given
	got, err := st.MFAUsers(ctx)
	must(t, err)
	diff(t, "MFAUsers", []store.MFAUser{suzuki, tanaka}, got)

	g3, err := st.PutMFAUser(ctx, again, true)
	must(t, err)
	if g3 != 3 {
		t.Fatalf("generation after replace = %d; want 3", g3)
	}
	got, err = st.MFAUsers(ctx)
	must(t, err)
	if len(got) != 2 || string(got[1].SealedSecret) != "\x07" || got[1].Generation != 3 {
		t.Fatalf("after replace: %+v", got)
	}
}

// testMFALifecycle: import is all or nothing (an enrolled user or a token
// serial held by another user refuses the whole batch and bumps nothing);
// temporary codes are listed until used or expired; unlock counters grow
// per user and device and survive a reset; consuming codes by ID removes
// recovery hashes and marks temp codes used, and only a real consumption
// moves the generation; a reset deletes factors and temp codes.
func testMFALifecycle(t *testing.T, st store.Store) {
	ctx := t.Context()
	user := func(name, serial string, hashes ...string) store.MFAUser {
		return store.MFAUser{User: name, SealedSecret: []byte(name), Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
			RecoverySalt: []byte("salt"), RecoveryHashes: hashes, CreatedAt: t0, CreatedBy: "op-1",
			Method: store.MFAMethodTOTPHardware, TokenSerial: serial}
	}
	gen := func() int64 {
		t.Helper()
		g, err := st.MFAGeneration(ctx)
		must(t, err)
		return g
	}
	h1, h2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	_, err := st.PutMFAUser(ctx, store.MFAUser{User: "tanaka", SealedSecret: []byte{1}, Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
		RecoverySalt: []byte("s"), RecoveryHashes: []string{h1, h2}, CreatedAt: t0, CreatedBy: "op-1"}, false)
	must(t, err)
	g0 := gen()

	// All or nothing.
	for _, bad := range [][]store.MFAUser{
		{user("sato", "SN-1"), user("tanaka", "SN-2")}, // tanaka is enrolled
		{user("sato", "SN-1"), user("suzuki", "SN-1")}, // one serial, two users
		{user("sato", "SN-1"), user("sato", "SN-3")},   // one user twice
	} {
		if _, err := st.ImportMFAUsers(ctx, bad, false); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("import %v: %v; want ErrConflict", bad, err)
		}
	}
	if g := gen(); g != g0 {
		t.Fatalf("refused imports moved the generation %d → %d", g0, g)
	}
	if us, _ := st.MFAUsers(ctx); len(us) != 1 {
		t.Fatalf("refused imports left users: %+v", us)
	}
	g1, err := st.ImportMFAUsers(ctx, []store.MFAUser{user("sato", "SN-1"), user("suzuki", "SN-2")}, false)
	must(t, err)
	if g1 != g0+1 {
		t.Fatalf("import generation %d; want %d", g1, g0+1)
	}
	users, err := st.MFAUsers(ctx)
	must(t, err)
	if len(users) != 3 || users[0].User != "sato" || users[0].TokenSerial != "SN-1" || users[0].Method != store.MFAMethodTOTPHardware ||
		users[2].User != "tanaka" || users[2].Method != store.MFAMethodTOTP || users[2].TokenSerial != "" {
		t.Fatalf("after import: %+v", users)
	}
	// Replace may keep a user's own serial, not take another's.
	if _, err := st.ImportMFAUsers(ctx, []store.MFAUser{user("sato", "SN-1")}, true); err != nil {
		t.Fatalf("re-import of sato with its own serial: %v", err)
	}
	if _, err := st.ImportMFAUsers(ctx, []store.MFAUser{user("sato", "SN-2")}, true); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("sato taking suzuki's serial: %v", err)
	}

	// Temporary codes.
	code := func(id, u string, exp time.Duration) store.MFATempCode {
		return store.MFATempCode{ID: id, User: u, Salt: []byte("s-" + id), Hash: strings.Repeat(id[:1], 64), CreatedAt: t0,
			CreatedBy: "op-2", ExpiresAt: t0.Add(exp)}
	}
	g2 := gen()
	gt, err := st.PutMFATempCode(ctx, code("1111", "tanaka", time.Hour))
	must(t, err)
	if gt != g2+1 {
		t.Fatalf("temp code generation %d; want %d", gt, g2+1)
	}
	bound := code("2222", "tanaka", 2*time.Hour)
	bound.DeviceID = "dev-1" // bound to one terminal (a privileged user's code)
	mustGen(t)(st.PutMFATempCode(ctx, bound))
	mustGen(t)(st.PutMFATempCode(ctx, code("3333", "nakamura", time.Minute)))
	if _, err := st.PutMFATempCode(ctx, code("1111", "sato", time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same code ID twice: %v", err)
	}
	cs, err := st.MFATempCodes(ctx, t0)
	must(t, err)
	want := []store.MFATempCode{code("3333", "nakamura", time.Minute), code("1111", "tanaka", time.Hour), bound}
	for i := range want {
		want[i].CreatedAt, want[i].ExpiresAt = us(want[i].CreatedAt), us(want[i].ExpiresAt)
	}
	diff(t, "MFATempCodes", want, cs)
	if cs, _ := st.MFATempCodes(ctx, t0.Add(90*time.Minute)); len(cs) != 1 || cs[0].ID != "2222" {
		t.Fatalf("codes after 90 minutes: %+v", cs)
	}

	// Unlocks.
	_, c1, err := st.UnlockMFAUser(ctx, "tanaka", "")
	must(t, err)
	_, c2, err := st.UnlockMFAUser(ctx, "tanaka", "")
	must(t, err)
	_, c3, err := st.UnlockMFAUser(ctx, "tanaka", "dev-1")
	must(t, err)
	if c1 != 1 || c2 != 2 || c3 != 1 {
		t.Fatalf("unlock counters %d %d %d; want 1 2 1", c1, c2, c3)
	}

	// Consumption by ID.
	g3 := gen()
	n, err := st.ConsumeMFACodes(ctx, "tanaka", []string{mfabundle.CodeID(h2), "1111", "3333", "ffff"}, t0)
	must(t, err)
	if n != 2 { // h2 and 1111; 3333 is nakamura's
		t.Fatalf("consumed %d; want 2", n)
	}
	if g := gen(); g != g3+1 {
		t.Fatalf("generation after consumption %d; want %d", g, g3+1)
	}
	if n, err := st.ConsumeMFACodes(ctx, "tanaka", []string{mfabundle.CodeID(h2), "1111"}, t0); err != nil || n != 0 {
		t.Fatalf("consuming again: %d, %v; want 0", n, err)
	}
	if g := gen(); g != g3+1 {
		t.Fatalf("a repeated consumption moved the generation to %d", g)
	}
	users, _ = st.MFAUsers(ctx)
	if got := users[2].RecoveryHashes; len(got) != 1 || got[0] != h1 {
		t.Fatalf("recovery hashes after consumption: %v", got)
	}
	if cs, _ := st.MFATempCodes(ctx, t0); len(cs) != 2 || cs[1].ID != "2222" {
		t.Fatalf("codes after consumption: %+v", cs)
	}

	// Reset.
	g4, err := st.DeleteMFAUser(ctx, "tanaka")
	must(t, err)
	if g4 != g3+2 {
		t.Fatalf("reset generation %d; want %d", g4, g3+2)
	}
	if _, err := st.DeleteMFAUser(ctx, "tanaka"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second reset: %v; want ErrNotFound", err)
	}
	if cs, _ := st.MFATempCodes(ctx, t0); len(cs) != 1 || cs[0].User != "nakamura" {
		t.Fatalf("temp codes after the reset: %+v", cs)
	}
	// Temp codes alone are factors too: a reset deletes them.
	if _, err := st.DeleteMFAUser(ctx, "nakamura"); err != nil {
		t.Fatalf("reset of a user with only a temp code: %v", err)
	}
	unlocks, err := st.MFAUnlocks(ctx)
	must(t, err)
	diff(t, "MFAUnlocks", []store.MFAUnlock{{User: "tanaka", Generation: 2}, {User: "tanaka", DeviceID: "dev-1", Generation: 1}}, unlocks)
	if _, c, _ := st.UnlockMFAUser(ctx, "tanaka", ""); c != 3 {
		t.Fatalf("unlock counter after a reset %d; want 3 (counters never go back)", c)
	}
}

func mustGen(t *testing.T) func(int64, error) {
	return func(_ int64, err error) {
		t.Helper()
		must(t, err)
	}
}

// testKeepVerdict: a report flagged KeepVerdict (it carried no status)
// moves last_seen and stores its events but keeps the verdict, reasons,
// failing-since time and policy version (issue #14 item 10); a device
// that never reported is judged all the same.
func testKeepVerdict(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m-keep", "h-keep", t0).Device
	in := report(d, t0.Add(time.Minute), store.VerdictNoncompliant, nil)
	in.Reasons, in.PolicyVersion = []string{"media: not enforced"}, 7
	f.ingestOK(in)
	empty := report(d, t0.Add(2*time.Minute), store.VerdictNoncompliant, nil, event("k1"))
	empty.Reasons, empty.KeepVerdict = []string{"agent: not reported"}, true
	f.ingestOK(empty)
	got, err := st.GetDevice(t.Context(), d.ID)
	must(t, err)
	if got.Verdict != store.VerdictNoncompliant || strings.Join(got.Reasons, ";") != "media: not enforced" || got.PolicyVersion != 7 ||
		got.FailingSince.Sub(t0.Add(time.Minute)).Abs() >= time.Microsecond || got.LastSeen.Sub(t0.Add(2*time.Minute)).Abs() >= time.Microsecond {
		t.Fatalf("after a KeepVerdict report: %+v", got)
	}
	fresh := f.enroll("m-keep2", "h-keep2", t0).Device
	first := report(fresh, t0.Add(time.Minute), store.VerdictNoncompliant, nil)
	first.KeepVerdict = true
	f.ingestOK(first)
	if got, _ := st.GetDevice(t.Context(), fresh.ID); got.Verdict != store.VerdictNoncompliant {
		t.Fatalf("never-reported device after a KeepVerdict report: %s", got.Verdict)
	}
}

// testMFALoginState: login events of a device keep per (user, device)
// the highest step, the run of failures and the lock-out; a success
// anywhere clears every device's failures and lock-outs of that user but
// no step; nothing new changes nothing (no generation bump); an unlock
// clears failures and lock-outs, a reset everything (issue #14 item 9).
func testMFALoginState(t *testing.T, st store.Store) {
	ctx := t.Context()
	rows := func() string {
		t.Helper()
		ss, err := st.MFALoginStates(ctx)
		must(t, err)
		var out []string
		for _, s := range ss {
			u := "-"
			if !s.LockedUntil.IsZero() {
				u = s.LockedUntil.UTC().Format("15:04")
			}
			out = append(out, fmt.Sprintf("%s/%s/%d/%d/%s", s.User, s.DeviceID, s.LastStep, s.Failures, u))
		}
		return strings.Join(out, " ")
	}
	record := func(dev string, wantChanged bool, evs ...store.MFALoginEvent) {
		t.Helper()
		g0, err := st.MFAGeneration(ctx)
		must(t, err)
		changed, err := st.RecordMFALogins(ctx, dev, evs, t0)
		must(t, err)
		g1, err := st.MFAGeneration(ctx)
		must(t, err)
		if changed != wantChanged || (g1 != g0) != wantChanged {
			t.Fatalf("changed %v, generation %d → %d; want changed %v", changed, g0, g1, wantChanged)
		}
	}
	if got := rows(); got != "" {
		t.Fatalf("empty store: %q", got)
	}
	until := t0.Add(time.Hour)
	record("dev-a", true, store.MFALoginEvent{Kind: store.MFALoginSuccess, User: "tanaka", Step: 100})
	record("dev-a", false, store.MFALoginEvent{Kind: store.MFALoginSuccess, User: "tanaka", Step: 100}) // re-sent
	record("dev-a", false, store.MFALoginEvent{Kind: store.MFALoginSuccess, User: "tanaka", Step: 90})  // older
	record("dev-b", true,
		store.MFALoginEvent{Kind: store.MFALoginFailure, User: "tanaka", Failures: 1},
		store.MFALoginEvent{Kind: store.MFALoginFailure, User: "tanaka", Failures: 2},
		store.MFALoginEvent{Kind: store.MFALoginFailure, User: "suzuki", Failures: 5},
		store.MFALoginEvent{Kind: store.MFALoginLockout, User: "suzuki", Until: until})
	if got, want := rows(), "suzuki/dev-b/0/0/"+until.UTC().Format("15:04")+" tanaka/dev-a/100/0/- tanaka/dev-b/0/2/-"; got != want {
		t.Fatalf("rows %q\nwant %q", got, want)
	}
	// A success on dev-c clears tanaka's failures on dev-b; steps stay.
	record("dev-c", true, store.MFALoginEvent{Kind: store.MFALoginSuccess, User: "tanaka", Step: 101})
	if got, want := rows(), "suzuki/dev-b/0/0/"+until.UTC().Format("15:04")+" tanaka/dev-a/100/0/- tanaka/dev-b/0/0/- tanaka/dev-c/101/0/-"; got != want {
		t.Fatalf("rows %q\nwant %q", got, want)
	}
	// An unlock clears suzuki's lock-out; a reset forgets tanaka.
	_, _, err := st.UnlockMFAUser(ctx, "suzuki", "dev-a")
	must(t, err)
	_, err = st.PutMFAUser(ctx, store.MFAUser{User: "tanaka", SealedSecret: []byte{1}, Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
		RecoverySalt: []byte("s"), CreatedAt: t0, CreatedBy: "op"}, true)
	must(t, err)
	_, err = st.DeleteMFAUser(ctx, "tanaka")
	must(t, err)
	if got, want := rows(), "suzuki/dev-b/0/0/-"; got != want {
		t.Fatalf("after unlock and reset: %q; want %q", got, want)
	}
	if _, err := st.RecordMFALogins(ctx, "dev-a", nil, t0); err != nil {
		t.Fatal(err)
	}
}
