package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// testConsole: console credentials (unique login, lock-out counting, a
// TOTP step accepted once), sessions, and hostname prefix search.
func testConsole(t *testing.T, st store.Store) {
	ctx := t.Context()
	op := store.Operator{ID: "op-c", Name: "佐藤", Role: "officer", TokenHash: []byte("hash-c"), CreatedAt: us(t0)}
	must(t, st.CreateOperator(ctx, op))
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-d", Name: "d", Role: "helpdesk", TokenHash: []byte("hash-d"), CreatedAt: us(t0)}))
	l := store.OperatorLogin{OperatorID: "op-c", Login: "sato", PasswordHash: "$argon2id$x", TOTPSecret: "JBSWY3DPEHPK3PXP", UpdatedAt: us(t0)}
	wantErr(t, "SetOperatorLogin for an unknown operator", st.SetOperatorLogin(ctx, store.OperatorLogin{OperatorID: "nobody", Login: "x", UpdatedAt: t0}), store.ErrNotFound)
	must(t, st.SetOperatorLogin(ctx, l))
	wantErr(t, "SetOperatorLogin with a taken login", st.SetOperatorLogin(ctx, store.OperatorLogin{OperatorID: "op-d", Login: "sato", UpdatedAt: t0}), store.ErrConflict)
	gotL, gotO, err := st.OperatorLogin(ctx, "sato")
	must(t, err)
	diff(t, "OperatorLogin", l, gotL)
	diff(t, "OperatorLogin operator", op, gotO)
	_, _, err = st.OperatorLogin(ctx, "Sato")
	wantErr(t, "OperatorLogin is exact", err, store.ErrNotFound)
	gotOp, err := st.GetOperator(ctx, "op-c")
	must(t, err)
	diff(t, "GetOperator", op, gotOp)
	_, err = st.GetOperator(ctx, "nobody")
	wantErr(t, "GetOperator unknown", err, store.ErrNotFound)

	// Three failures with max 3: locked for 15 minutes, count restarts.
	for i := 1; i <= 3; i++ {
		got, err := st.LoginFailed(ctx, "op-c", t0, 3, 15*time.Minute)
		must(t, err)
		if i < 3 && (got.Failures != i || !got.LockedUntil.IsZero()) {
			t.Errorf("after %d failures: failures %d, locked until %v", i, got.Failures, got.LockedUntil)
		}
		if i == 3 && (got.Failures != 0 || !got.LockedUntil.Equal(us(t0.Add(15*time.Minute)))) {
			t.Errorf("after 3 failures: failures %d, locked until %v; want 0, %v", got.Failures, got.LockedUntil, us(t0.Add(15*time.Minute)))
		}
	}
	gotL, _, err = st.OperatorLogin(ctx, "sato")
	must(t, err)
	if !gotL.LockedUntil.Equal(us(t0.Add(15 * time.Minute))) {
		t.Errorf("stored lock = %v", gotL.LockedUntil)
	}
	_, err = st.LoginFailed(ctx, "nobody", t0, 3, time.Minute)
	wantErr(t, "LoginFailed unknown", err, store.ErrNotFound)

	must(t, st.LoginSucceeded(ctx, "op-c", 100, t0))
	wantErr(t, "the same TOTP step twice", st.LoginSucceeded(ctx, "op-c", 100, t0), store.ErrConflict)
	wantErr(t, "an older TOTP step", st.LoginSucceeded(ctx, "op-c", 99, t0), store.ErrConflict)
	must(t, st.LoginSucceeded(ctx, "op-c", 101, t0))
	gotL, _, err = st.OperatorLogin(ctx, "sato")
	must(t, err)
	if gotL.Failures != 0 || !gotL.LockedUntil.IsZero() || gotL.LastTOTPStep != 101 {
		t.Errorf("after success: %+v", gotL)
	}

	s := store.ConsoleSession{IDHash: bytes.Repeat([]byte{7}, 32), OperatorID: "op-c", CreatedAt: us(t0), LastSeen: us(t0)}
	must(t, st.CreateSession(ctx, s))
	wantErr(t, "CreateSession twice", st.CreateSession(ctx, s), store.ErrConflict)
	gotS, gotO, err := st.Session(ctx, s.IDHash)
	must(t, err)
	diff(t, "Session", s, gotS)
	diff(t, "Session operator", op, gotO)
	must(t, st.TouchSession(ctx, s.IDHash, t0.Add(time.Minute)))
	gotS, _, err = st.Session(ctx, s.IDHash)
	must(t, err)
	if !gotS.LastSeen.Equal(us(t0.Add(time.Minute))) {
		t.Errorf("LastSeen after touch = %v", gotS.LastSeen)
	}
	must(t, st.DeleteSession(ctx, s.IDHash))
	_, _, err = st.Session(ctx, s.IDHash)
	wantErr(t, "Session after delete", err, store.ErrNotFound)
	wantErr(t, "TouchSession after delete", st.TouchSession(ctx, s.IDHash, t0), store.ErrNotFound)
	must(t, st.DeleteSession(ctx, s.IDHash))

	f := newFixture(t, st)
	for i, h := range []string{"kyoto-02", "kyoto-01", "kyo", "osaka-01", "kyōto-03", "<script>"} {
		f.enroll("m-"+string(rune('a'+i)), h, t0)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"kyoto", []string{"kyoto-01", "kyoto-02"}},
		{"kyo", []string{"kyo", "kyoto-01", "kyoto-02"}},
		{"ky", []string{"kyo", "kyoto-01", "kyoto-02", "kyōto-03"}},
		{"kyō", []string{"kyōto-03"}},
		{"<", []string{"<script>"}},
		{"nara", nil},
	} {
		ds, err := st.SearchDevices(ctx, tc.prefix, 10)
		must(t, err)
		var got []string
		for _, d := range ds {
			got = append(got, d.Facts.GetHostname())
		}
		diff(t, "SearchDevices("+tc.prefix+")", tc.want, got)
	}
	if ds, err := st.SearchDevices(ctx, "kyo", 2); err != nil || len(ds) != 2 {
		t.Errorf("SearchDevices limit 2 = %d, %v", len(ds), err)
	}
}
