package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// enrollKey enrols machineID with the key whose hash is key.
func (f *fixture) enrollKey(token []byte, machineID, key string, at time.Time) (store.EnrollResult, error) {
	f.n++
	serial := fmt.Sprintf("%x", 0x1000+f.n)
	return f.st.Enroll(f.t.Context(), store.EnrollParams{
		TokenHash:   token,
		Now:         at,
		Facts:       facts(machineID, "pc-"+machineID),
		NewDeviceID: fmt.Sprintf("dev-%04d", f.n),
		KeyHash:     []byte("key-hash-" + key),
		Sign: func(id string) ([]byte, string, error) {
			return []byte("cert for " + id + " " + serial), serial, nil
		},
	})
}

func ok(ss ...*mamoriv1.ControlStatus) []*mamoriv1.ControlStatus { return ss }

// testEnrollRetry: an enrolment retried with the same token, machine ID and
// key (the first answer was lost) is issued again without counting another
// use, even when the token has none left; another key, another machine or
// a revoked device counts (and is refused when the token is used up); an
// expired token is refused whatever.
func testEnrollRetry(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	tok := []byte("one-use-token-hash-0000000000000")
	must(t, st.CreateToken(t.Context(), store.Token{ID: "tok-1", Hash: tok, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1}))

	first, err := f.enrollKey(tok, "m-1", "k1", t0)
	must(t, err)
	if first.Repeated {
		t.Error("first enrolment reported as repeated")
	}
	for i := range 3 {
		again, err := f.enrollKey(tok, "m-1", "k1", t0.Add(time.Duration(i+1)*time.Minute))
		if err != nil {
			t.Fatalf("retry %d of the same enrolment: %v (the token's only use was spent by this machine)", i+1, err)
		}
		if !again.Repeated || again.Device.ID != first.Device.ID {
			t.Errorf("retry %d: repeated=%v device %s, want repeated on %s", i+1, again.Repeated, again.Device.ID, first.Device.ID)
		}
		if again.Device.CertSerial == first.Device.CertSerial {
			t.Errorf("retry %d kept serial %s: want a new certificate", i+1, again.Device.CertSerial)
		}
	}
	_, err = f.enrollKey(tok, "m-2", "k2", t0.Add(5*time.Minute))
	wantErr(t, "another machine after the only use", err, store.ErrTokenUsedUp)
	_, err = f.enrollKey(tok, "m-1", "k-new", t0.Add(5*time.Minute))
	wantErr(t, "same machine with a new key", err, store.ErrTokenUsedUp)
	_, err = f.enrollKey(tok, "m-1", "k1", t0.Add(2*time.Hour))
	wantErr(t, "retry after the token expired", err, store.ErrTokenExpired)

	// A revoked device's retry counts a use: it must not lift the
	// revocation for free.
	tok2 := []byte("two-use-token-hash-0000000000000")
	must(t, st.CreateToken(t.Context(), store.Token{ID: "tok-2", Hash: tok2, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1}))
	d, err := f.enrollKey(tok2, "m-3", "k3", t0)
	must(t, err)
	_, err = st.RevokeDevice(t.Context(), d.Device.ID, "stolen", t0.Add(time.Minute))
	must(t, err)
	_, err = f.enrollKey(tok2, "m-3", "k3", t0.Add(2*time.Minute))
	wantErr(t, "retry of a revoked device with a used-up token", err, store.ErrTokenUsedUp)
	if got := f.device(d.Device.ID); got.RevokedAt.IsZero() {
		t.Error("refused retry lifted the revocation")
	}

	// Without a key hash (older callers) every enrolment counts.
	tok3 := []byte("three-use-token-hash-00000000000")
	must(t, st.CreateToken(t.Context(), store.Token{ID: "tok-3", Hash: tok3, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1}))
	_, err = f.enrollErr(tok3, "m-4", "pc-4", t0)
	must(t, err)
	_, err = f.enrollErr(tok3, "m-4", "pc-4", t0)
	wantErr(t, "retry without a key hash", err, store.ErrTokenUsedUp)
}

// testEnrollRetryConcurrent: many machines enrol at once on a token with
// exactly as many uses, each retrying several times: all succeed and the
// token ends with every use spent once.
func testEnrollRetryConcurrent(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	const n = 8
	tok := []byte("concurrent-token-hash-0000000000")
	must(t, st.CreateToken(t.Context(), store.Token{ID: "tok-c", Hash: tok, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: n}))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		ids = map[string]string{}
	)
	errs := make(chan error, n*3)
	for i := range n {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := fmt.Sprintf("m-%d", i)
				mu.Lock()
				f.n++
				seq := f.n
				mu.Unlock()
				serial := fmt.Sprintf("%x", 0x5000+seq)
				res, err := st.Enroll(t.Context(), store.EnrollParams{
					TokenHash: tok, Now: t0, Facts: facts(m, "pc-"+m), NewDeviceID: fmt.Sprintf("dev-c%04d", seq),
					KeyHash: []byte("key-" + m),
					Sign:    func(string) ([]byte, string, error) { return []byte("c"), serial, nil },
				})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", m, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := ids[m]; ok && prev != res.Device.ID {
					errs <- fmt.Errorf("%s enrolled as %s and %s", m, prev, res.Device.ID)
				}
				ids[m] = res.Device.ID
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(ids) != n {
		t.Errorf("%d machines enrolled, want %d", len(ids), n)
	}
	_, err := f.enrollKey(tok, "m-late", "k", t0)
	wantErr(t, "one more machine after every use was spent", err, store.ErrTokenUsedUp)
}

func (f *fixture) renew(d store.Device, presented string, at time.Time) (store.RenewResult, error) {
	f.n++
	serial := fmt.Sprintf("%x", 0x9000+f.n)
	return f.st.Renew(f.t.Context(), store.RenewParams{
		DeviceID: d.ID, PresentedSerial: presented, Now: at,
		Sign: func() ([]byte, string, error) { return []byte("renewed " + serial), serial, nil },
	})
}

// testRenew: a device renews with its current certificate; the old one
// stays accepted (same key) until the next renewal or re-enrolment, so an
// agent that never saved the answer keeps working and can renew again.
// Revoked, unknown and superseded certificates are refused, and a Sign
// failure writes nothing.
func testRenew(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m-1", "pc-01", t0).Device
	old := d.CertSerial
	accepts := func(what, serial string, at time.Time) {
		t.Helper()
		in := report(d, at, store.VerdictCompliant, ok(status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "ok")))
		in.CertSerial = serial
		if r := f.ingest(in); r[0].Err != nil {
			t.Errorf("%s: report refused: %v", what, r[0].Err)
		}
	}
	refuses := func(what, serial string, at time.Time, want error) {
		t.Helper()
		in := report(d, at, store.VerdictCompliant, nil)
		in.CertSerial = serial
		wantErr(t, what, f.ingest(in)[0].Err, want)
	}

	r1, err := f.renew(d, old, t0.Add(time.Hour))
	must(t, err)
	if r1.Device.CertSerial == old || string(r1.CertDER) == "" {
		t.Fatalf("renewal kept serial %s", r1.Device.CertSerial)
	}
	diff(t, "Renew result vs GetDevice", f.device(d.ID), r1.Device)
	accepts("new certificate", r1.Device.CertSerial, t0.Add(2*time.Hour))
	accepts("certificate renewed from (answer lost)", old, t0.Add(3*time.Hour))

	// The agent never saved r1 and renews again with the old one.
	r2, err := f.renew(d, old, t0.Add(4*time.Hour))
	must(t, err)
	accepts("second renewal", r2.Device.CertSerial, t0.Add(5*time.Hour))
	accepts("old certificate still held", old, t0.Add(6*time.Hour))
	refuses("first renewal's certificate, never saved", r1.Device.CertSerial, t0.Add(7*time.Hour), store.ErrCertSuperseded)

	// It saved r2 and renews with it: now the old one is gone.
	r3, err := f.renew(d, r2.Device.CertSerial, t0.Add(8*time.Hour))
	must(t, err)
	refuses("certificate two renewals back", old, t0.Add(9*time.Hour), store.ErrCertSuperseded)
	accepts("renewed-from certificate", r2.Device.CertSerial, t0.Add(10*time.Hour))
	accepts("current certificate", r3.Device.CertSerial, t0.Add(11*time.Hour))

	_, err = f.renew(d, old, t0.Add(12*time.Hour))
	wantErr(t, "renew with a superseded certificate", err, store.ErrCertSuperseded)
	_, err = f.renew(d, "", t0.Add(12*time.Hour))
	wantErr(t, "renew with no serial", err, store.ErrCertSuperseded)
	_, err = f.renew(store.Device{ID: "no-such-device"}, old, t0)
	wantErr(t, "renew of an unknown device", err, store.ErrNotFound)

	before := f.device(d.ID)
	_, err = st.Renew(t.Context(), store.RenewParams{DeviceID: d.ID, PresentedSerial: r3.Device.CertSerial, Now: t0.Add(13 * time.Hour),
		Sign: func() ([]byte, string, error) { return nil, "", errors.New("HSM unplugged") }})
	if err == nil {
		t.Error("renew with a failing Sign succeeded")
	}
	diff(t, "device after a failed Sign", before, f.device(d.ID))

	// Re-enrolment drops the renewed-from certificate.
	cur := d
	cur.CertSerial = r3.Device.CertSerial
	reres, err := f.reenroll(cur, "m-1", "pc-01", t0.Add(14*time.Hour))
	must(t, err)
	re := reres.Device
	refuses("renewed-from certificate after re-enrolment", r2.Device.CertSerial, t0.Add(15*time.Hour), store.ErrCertSuperseded)
	_, err = f.renew(d, r3.Device.CertSerial, t0.Add(15*time.Hour))
	wantErr(t, "renew with the certificate re-enrolment replaced", err, store.ErrCertSuperseded)

	_, err = st.RevokeDevice(t.Context(), d.ID, "stolen", t0.Add(16*time.Hour))
	must(t, err)
	_, err = f.renew(d, re.CertSerial, t0.Add(17*time.Hour))
	wantErr(t, "renew of a revoked device", err, store.ErrDeviceRevoked)
}
