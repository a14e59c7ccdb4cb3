package state

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
)

func newIdentity(t *testing.T, d *Dir) *Identity {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := d.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "t1")
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := ca.SignDeviceCSR(csr, "dev-1", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &Identity{Device: Device{DeviceID: "dev-1", Servers: []string{"s:1"}, EnrolledAt: time.Now().UTC()}, Key: key, Cert: cert, CA: ca.Cert}
}

func TestIdentityRoundTrip(t *testing.T) {
	d, err := OpenWith(filepath.Join(t.TempDir(), "state"), Options{OpenTPM: NoTPM})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadIdentity(); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("empty dir: %v, want ErrNotEnrolled", err)
	}
	id := newIdentity(t, d)
	if err := d.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	got, err := d.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if got.Device.DeviceID != "dev-1" || !got.Cert.Equal(id.Cert) || got.Device.CAFingerprint != pki.Fingerprint(id.CA.Raw) {
		t.Errorf("loaded %+v", got.Device)
	}
	if runtime.GOOS != "windows" {
		st, _ := os.Stat(filepath.Join(d.Path(), KeyFile))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("key mode %v, want 0600", st.Mode().Perm())
		}
		dst, _ := os.Stat(d.Path())
		if dst.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v, want 0700", dst.Mode().Perm())
		}
	}
}

func TestRefusesWorldReadableKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits mean nothing on Windows")
	}
	d, _ := OpenWith(t.TempDir(), Options{OpenTPM: NoTPM})
	if err := d.SaveIdentity(newIdentity(t, d)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d.Path(), KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadIdentity(); err == nil || !strings.Contains(err.Error(), "must be 0600") {
		t.Errorf("err = %v, want a refusal naming 0600", err)
	}
}

func TestMismatchedPairIsNotEnrolled(t *testing.T) {
	d, _ := OpenWith(t.TempDir(), Options{OpenTPM: NoTPM})
	id := newIdentity(t, d)
	if err := d.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	other, _ := d.NewKey()
	if err := pki.WriteKey(filepath.Join(d.Path(), KeyFile), other); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadIdentity(); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("err = %v, want ErrNotEnrolled", err)
	}
	id.Key = other
	if err := d.SaveIdentity(id); err == nil {
		t.Error("saved a certificate with a key it is not for")
	}
}

func TestPolicy(t *testing.T) {
	d, _ := OpenWith(t.TempDir(), Options{OpenTPM: NoTPM})
	if _, err := d.LoadPolicy(); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("err = %v, want ErrNoPolicy", err)
	}
	p := policy.Default()
	p.Version = 7
	if err := d.SavePolicy(p); err != nil {
		t.Fatal(err)
	}
	got, err := d.LoadPolicy()
	if err != nil || !proto.Equal(got, p) {
		t.Fatalf("got %v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(d.Path(), PolicyFile), []byte("\xff\xff\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadPolicy(); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged policy: %v", err)
	}
}
