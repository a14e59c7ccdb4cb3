package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// enrollEK enrols with an attested TPM key whose EK has fingerprint ek
// (empty: a software key).
func (f *fixture) enrollEK(ek, machineID, host string, at time.Time) (store.EnrollResult, error) {
	f.n++
	serial := fmt.Sprintf("%x", 0x1000+f.n)
	return f.st.Enroll(f.t.Context(), store.EnrollParams{
		TokenHash:     f.token,
		Now:           at,
		Facts:         facts(machineID, host),
		NewDeviceID:   fmt.Sprintf("dev-%04d", f.n),
		EKFingerprint: ek,
		KeyAttested:   ek != "",
		Sign: func(id string) ([]byte, string, error) {
			return []byte("cert for " + id + " " + serial), serial, nil
		},
	})
}

// testAttestedEnroll: the EK fingerprint is stored and names the device;
// the same EK under another machine ID is the same device (re-imaged),
// a software re-enrolment keeps the EK but clears KeyAttested.
func testAttestedEnroll(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	const ekA, ekB = "aa11", "bb22"
	a, err := f.enrollEK(ekA, "m-1", "pc-01", t0)
	must(t, err)
	if a.Reenrolled || a.Device.EKFingerprint != ekA || !a.Device.KeyAttested {
		t.Fatalf("first attested enrolment: reenrolled %v, EK %q, attested %v", a.Reenrolled, a.Device.EKFingerprint, a.Device.KeyAttested)
	}
	diff(t, "GetDevice after attested enrolment", a.Device, f.device(a.Device.ID))

	// Same TPM, machine re-imaged with a new machine ID: same device.
	b, err := f.enrollEK(ekA, "m-1-reimaged", "pc-01", t0.Add(time.Hour))
	must(t, err)
	if !b.Reenrolled || b.Device.ID != a.Device.ID {
		t.Fatalf("same EK, new machine ID: device %s reenrolled %v; want %s, true", b.Device.ID, b.Reenrolled, a.Device.ID)
	}
	if got := b.Device.Facts.GetMachineId(); got != "m-1-reimaged" {
		t.Errorf("machine ID after re-imaging = %q", got)
	}
	// The new machine ID now names the device: a software enrolment
	// claiming it without proof is a possible clone; with the proof of
	// its current key it is the device.
	if x, err := f.enrollEK("", "m-1-reimaged", "pc-x", t0.Add(2*time.Hour)); err != nil || x.CloneOf != a.Device.ID {
		t.Errorf("claimed machine ID of an attested device: clone of %q, %v; want %s", x.CloneOf, err, a.Device.ID)
	}
	c, err := f.reenroll(b.Device, "m-1-reimaged", "pc-01", t0.Add(2*time.Hour))
	must(t, err)
	if c.Device.ID != a.Device.ID {
		t.Errorf("software enrolment with the proof of the current key made device %s, want %s", c.Device.ID, a.Device.ID)
	}
	if c.Device.EKFingerprint != ekA || c.Device.KeyAttested {
		t.Errorf("after a software re-enrolment: EK %q attested %v; want %q, false", c.Device.EKFingerprint, c.Device.KeyAttested, ekA)
	}

	// Another TPM is another device.
	d, err := f.enrollEK(ekB, "m-2", "pc-02", t0)
	must(t, err)
	if d.Reenrolled || d.Device.ID == a.Device.ID || d.Device.EKFingerprint != ekB {
		t.Errorf("second TPM: %+v", d)
	}
	// A machine ID of one device presented with the EK of another: the EK
	// names the device; the machine ID is taken, so it is a conflict and
	// nothing changes.
	before := f.device(d.Device.ID)
	_, err = f.enrollEK(ekB, "m-1-reimaged", "pc-02", t0.Add(3*time.Hour))
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("EK of one device with the machine ID of another: %v, want ErrConflict", err)
	}
	diff(t, "device after the refused enrolment", before, f.device(d.Device.ID))

	// A proven EK that is not verified (no vendor root, not approved)
	// still names the device, but its key is not attested.
	u, err := f.st.Enroll(t.Context(), store.EnrollParams{TokenHash: f.token, Now: t0.Add(4 * time.Hour), Facts: facts("m-2", "pc-02"),
		NewDeviceID: "dev-unverified", EKFingerprint: ekB,
		Sign: func(id string) ([]byte, string, error) { return []byte("c"), "u1", nil }})
	must(t, err)
	if u.Device.ID != d.Device.ID || u.By != "ek" || u.Device.KeyAttested {
		t.Errorf("unverified EK: device %s by %q attested %v; want %s, ek, false", u.Device.ID, u.By, u.Device.KeyAttested, d.Device.ID)
	}
	// A revoked device is not re-enrolled by its EK either.
	_, err = f.st.RevokeDevice(t.Context(), d.Device.ID, "stolen", t0.Add(5*time.Hour))
	must(t, err)
	_, err = f.enrollEK(ekB, "m-2", "pc-02", t0.Add(6*time.Hour))
	wantErr(t, "attested re-enrolment of a revoked device", err, store.ErrDeviceRevoked)

	// Devices that never attested have no EK.
	e := f.enroll("m-3", "pc-03", t0)
	if e.Device.EKFingerprint != "" || e.Device.KeyAttested {
		t.Errorf("software device: EK %q attested %v", e.Device.EKFingerprint, e.Device.KeyAttested)
	}
}
