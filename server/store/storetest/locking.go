package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/server/store"
)

// testConcurrentReadModifyWrite: the methods that read a row and write it
// back in one transaction (LoginFailed, ConsumeMFACodes, RevokeException)
// see each other's changes when they run at once: failures are counted one
// by one, a recovery code is consumed once, an exception is revoked once.
// On PostgreSQL this is the row lock (FOR UPDATE); on SQLite the one
// writer. A repeated ID in one ConsumeMFACodes call counts once.
func testConcurrentReadModifyWrite(t *testing.T, st store.Store) {
	ctx := t.Context()
	const n = 8
	run := func(fn func() error) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fn()
			}()
		}
		wg.Wait()
		return errs
	}

	// Failures count one by one.
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-l", Name: "l", Role: "officer", TokenHash: []byte("hash-l"), CreatedAt: us(t0)}))
	must(t, st.SetOperatorLogin(ctx, store.OperatorLogin{OperatorID: "op-l", Login: "lock", PasswordHash: "x", UpdatedAt: us(t0)}))
	for _, err := range run(func() error {
		_, err := st.LoginFailed(ctx, "op-l", t0, 100, time.Minute)
		return err
	}) {
		must(t, err)
	}
	l, _, err := st.OperatorLogin(ctx, "lock")
	must(t, err)
	if l.Failures != n {
		t.Errorf("failures after %d concurrent LoginFailed: %d", n, l.Failures)
	}

	// A recovery code and a temp code are consumed once.
	h := strings.Repeat("c", 64)
	_, err = st.PutMFAUser(ctx, store.MFAUser{User: "kato", SealedSecret: []byte{1}, Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
		RecoverySalt: []byte("s"), RecoveryHashes: []string{h, strings.Repeat("d", 64)}, CreatedAt: t0, CreatedBy: "op-1"}, false)
	must(t, err)
	_, err = st.PutMFATempCode(ctx, store.MFATempCode{ID: "5555", User: "kato", Salt: []byte("s"), Hash: strings.Repeat("5", 64),
		CreatedAt: t0, CreatedBy: "op-1", ExpiresAt: t0.Add(time.Hour)})
	must(t, err)
	var mu sync.Mutex
	total := 0
	for _, err := range run(func() error {
		k, err := st.ConsumeMFACodes(ctx, "kato", []string{mfabundle.CodeID(h), "5555"}, t0)
		mu.Lock()
		total += k
		mu.Unlock()
		return err
	}) {
		must(t, err)
	}
	if total != 2 {
		t.Errorf("%d concurrent consumptions of two codes consumed %d", n, total)
	}
	_, err = st.PutMFATempCode(ctx, store.MFATempCode{ID: "6666", User: "kato", Salt: []byte("s"), Hash: strings.Repeat("6", 64),
		CreatedAt: t0, CreatedBy: "op-1", ExpiresAt: t0.Add(time.Hour)})
	must(t, err)
	if k, err := st.ConsumeMFACodes(ctx, "kato", []string{"6666", "6666"}, t0); err != nil || k != 1 {
		t.Errorf("one temp code named twice: consumed %d, %v; want 1", k, err)
	}
	if k, err := st.ConsumeMFACodes(ctx, "kato", []string{mfabundle.CodeID(strings.Repeat("d", 64)), mfabundle.CodeID(strings.Repeat("d", 64))}, t0); err != nil || k != 1 {
		t.Errorf("one recovery code named twice: consumed %d, %v; want 1", k, err)
	}

	// An exception is revoked once.
	must(t, st.CreateException(ctx, store.Exception{ID: "e-race", Vendor: "0781", Product: "5581", Serial: "S", User: "kato",
		Group: "g", Reason: "r", CreatedBy: "op-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	ok, conflict := 0, 0
	for _, err := range run(func() error {
		_, err := st.RevokeException(ctx, "e-race", "op-2", "done", t0.Add(time.Minute))
		return err
	}) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
			conflict++
		default:
			t.Errorf("concurrent revoke: %v", err)
		}
	}
	if ok != 1 || conflict != n-1 {
		t.Errorf("%d concurrent revokes: %d succeeded, %d conflicts; want 1 and %d", n, ok, conflict, n-1)
	}
}
