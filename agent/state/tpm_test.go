package state

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

func withTPM(t transport.TPMCloser) Options {
	return Options{OpenTPM: func() (transport.TPMCloser, error) { return t, nil }}
}

// TestTPMIdentity: with a TPM the key is made in it, stored as key.tpm
// (no key.pem), and loads back as a working signer.
func TestTPMIdentity(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	d, err := OpenWith(t.TempDir(), withTPM(tp))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.KeyStorage(); got != StorageTPM {
		t.Errorf("KeyStorage before enrolment = %q, want tpm", got)
	}
	id := newIdentity(t, d)
	if _, ok := id.Key.(*tpm.Key); !ok {
		t.Fatalf("NewKey made a %T, want a TPM key", id.Key)
	}
	if err := d.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Path(), KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key.pem exists next to a TPM key: %v", err)
	}
	st, err := os.Stat(filepath.Join(d.Path(), TPMKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key.tpm: %v, %v", st, err)
	}
	// A fresh process on the same machine.
	d2, _ := OpenWith(d.Path(), withTPM(tp))
	got, err := d2.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if d2.KeyStorage() != StorageTPM || KeyStorageOf(got.Key) != StorageTPM {
		t.Errorf("KeyStorage = %q / %q", d2.KeyStorage(), KeyStorageOf(got.Key))
	}
	digest := sha256.Sum256([]byte("report"))
	sig, err := got.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(got.Cert.PublicKey.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("loaded TPM key does not sign for the certificate: %v", err)
	}
	// Loading twice reuses the loaded key (the TPM has few slots).
	again, err := d2.LoadIdentity()
	if err != nil || again.Key != got.Key {
		t.Errorf("second load: %v (same key %v)", err, again != nil && again.Key == got.Key)
	}
}

// TestCopiedStateDirIsNoIdentity: the state directory copied to another
// machine (another TPM) yields no identity, and says why.
func TestCopiedStateDirIsNoIdentity(t *testing.T) {
	tpA := tpmtest.Open(t, 1)
	d, _ := OpenWith(t.TempDir(), withTPM(tpA))
	if err := d.SaveIdentity(newIdentity(t, d)); err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copyDir, os.DirFS(d.Path())); err != nil {
		t.Fatal(err)
	}
	d.Close() // machine A is gone; the simulator is global

	tpB := tpmtest.Open(t, 2)
	stolen, _ := OpenWith(copyDir, withTPM(tpB))
	_, err := stolen.LoadIdentity()
	if !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("copied state on another TPM: %v, want ErrNotEnrolled", err)
	}
	if !strings.Contains(err.Error(), "copied from another terminal") {
		t.Errorf("error does not say why: %v", err)
	}
	// Nor on a machine without a TPM.
	noTPM, _ := OpenWith(copyDir, Options{OpenTPM: NoTPM})
	if _, err := noTPM.LoadIdentity(); !errors.Is(err, ErrNotEnrolled) || !errors.Is(err, tpm.ErrNoTPM) {
		t.Errorf("copied state without a TPM: %v", err)
	}
}

// TestFileFallback: no TPM, the key is a 0600 file and the fact says so;
// a later TPM enrolment replaces it.
func TestFileFallback(t *testing.T) {
	d, _ := OpenWith(t.TempDir(), Options{OpenTPM: NoTPM})
	if d.KeyStorage() != StorageFile {
		t.Errorf("KeyStorage = %q, want file", d.KeyStorage())
	}
	id := newIdentity(t, d)
	if KeyStorageOf(id.Key) != StorageFile {
		t.Fatalf("key %T", id.Key)
	}
	if err := d.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	if d.KeyStorage() != StorageFile {
		t.Errorf("KeyStorage after enrolment = %q", d.KeyStorage())
	}
	// The TPM appears (enabled in firmware); re-enrolment moves the key.
	tp := tpmtest.Open(t, 3)
	d2, _ := OpenWith(d.Path(), withTPM(tp))
	if d2.KeyStorage() != StorageFile {
		t.Errorf("enrolled with a file key: KeyStorage = %q, want file until re-enrolment", d2.KeyStorage())
	}
	if err := d2.SaveIdentity(newIdentity(t, d2)); err != nil {
		t.Fatal(err)
	}
	if d2.KeyStorage() != StorageTPM {
		t.Errorf("after re-enrolment KeyStorage = %q", d2.KeyStorage())
	}
	if _, err := os.Stat(filepath.Join(d.Path(), KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale key.pem kept: %v", err)
	}
	if _, err := d2.LoadIdentity(); err != nil {
		t.Fatal(err)
	}
}
