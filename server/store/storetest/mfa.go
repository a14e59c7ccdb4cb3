package storetest

import (
	"errors"
	"testing"

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
