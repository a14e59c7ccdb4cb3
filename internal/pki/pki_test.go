package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func TestCAIsCreatedOnceAndReloaded(t *testing.T) {
	dir := t.TempDir()
	ca, created, err := LoadOrCreateCA(dir, now)
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	st, err := os.Stat(filepath.Join(dir, caKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateCA(dir, now)
	if err != nil || created {
		t.Fatalf("reload: %v created=%v", err, created)
	}
	if again.Fingerprint() != ca.Fingerprint() || len(ca.Fingerprint()) != 64 {
		t.Fatalf("fingerprint changed: %s vs %s", ca.Fingerprint(), again.Fingerprint())
	}
	if pub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key is not P-256")
	}
}

func TestCAKeyReadableByOthersRefused(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadOrCreateCA(dir, now); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("world-readable CA key accepted: %v", err)
	}
}

func TestSignDeviceCSRBindsDeviceID(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewDeviceKey()
	csr, _ := NewCSR(key, "pc-001")
	der, serial, err := ca.SignDeviceCSR(csr, "dev-123", false, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := DeviceIDFromCert(cert); err != nil || id != "dev-123" {
		t.Fatalf("device id %q %v", id, err)
	}
	if SerialHex(cert) != serial {
		t.Fatalf("serial %s vs %s", SerialHex(cert), serial)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Fatalf("device cert does not verify as a client cert: %v", err)
	}
}

func TestSignDeviceCSRRefusesBadRequests(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), now)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384CSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	good, _ := NewDeviceKey()
	goodCSR, _ := NewCSR(good, "x")
	tampered := append([]byte(nil), goodCSR...)
	tampered[len(tampered)-5] ^= 0xff
	for name, csr := range map[string][]byte{
		"garbage": []byte("not a csr"), "empty": nil, "rsa key": rsaCSR, "p-384 key": p384CSR, "bad signature": tampered,
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := ca.SignDeviceCSR(csr, "dev", false, now); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDeviceIDFromCertRefusesOthers(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), now)
	srv, err := ca.ServerCertificate(t.TempDir(), []string{"localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DeviceIDFromCert(srv.Leaf); err == nil {
		t.Fatal("server certificate accepted as a device certificate")
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	const fp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, in := range []string{fp, strings.ToUpper(fp), "sha256:" + fp, "SHA256=" + fp,
		"01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF"} {
		if got, err := NormalizeFingerprint(in); err != nil || got != fp {
			t.Errorf("%q → %q %v", in, got, err)
		}
	}
	for _, in := range []string{"", "abc", fp + "00", strings.Replace(fp, "0", "g", 1)} {
		if _, err := NormalizeFingerprint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// A TLS handshake with the pinned config succeeds against the right CA and
// fails against another.
func TestPinnedTLSConfig(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), time.Now())
	other, _, _ := LoadOrCreateCA(t.TempDir(), time.Now())
	cert, err := ca.ServerCertificate(t.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(cert, ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dial := func(fp string) (*x509.Certificate, error) {
		var got *x509.Certificate
		cfg, err := PinnedTLSConfig(fp, "localhost", func(c *x509.Certificate) { got = c })
		if err != nil {
			return nil, err
		}
		c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			return nil, err
		}
		c.Close()
		return got, nil
	}
	got, err := dial(ca.Fingerprint())
	if err != nil || got == nil || Fingerprint(got.Raw) != ca.Fingerprint() {
		t.Fatalf("pinned dial to the right CA: %v", err)
	}
	if _, err := dial(other.Fingerprint()); err == nil || !errors.Is(err, ErrFingerprintMismatch) && !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("pinned dial with the wrong fingerprint: %v", err)
	}
}

func FuzzNormalizeFingerprint(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("AB:CD")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := NormalizeFingerprint(s)
		if err != nil {
			return
		}
		if len(fp) != 64 || strings.ToLower(fp) != fp {
			t.Fatalf("%q normalised to %q", s, fp)
		}
		if again, err := NormalizeFingerprint(fp); err != nil || again != fp {
			t.Fatalf("not idempotent: %q → %q (%v)", fp, again, err)
		}
	})
}

func TestKeyAttestedMarker(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), now)
	key, _ := NewDeviceKey()
	csr, _ := NewCSR(key, "pc")
	for _, attested := range []bool{false, true} {
		der, _, err := ca.SignDeviceCSR(csr, "dev-1", attested, now)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		if KeyAttested(cert) != attested {
			t.Fatalf("attested=%v: marker says %v", attested, KeyAttested(cert))
		}
		if id, err := DeviceIDFromCert(cert); err != nil || id != "dev-1" {
			t.Fatalf("the marker confuses the device ID: %q %v", id, err)
		}
	}
}
