package api

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// FuzzKeyProof: checkKeyProof takes a certificate and a signature from an
// unauthenticated caller. Whatever the bytes, it never panics, and it
// names a device only for a certificate of this CA with a signature by
// its key over this request's CSR.
func FuzzKeyProof(f *testing.F) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	ca, _, err := pki.LoadOrCreateCA(f.TempDir(), now)
	if err != nil {
		f.Fatal(err)
	}
	key, _ := pki.NewDeviceKey()
	csr, _ := pki.NewCSR(key, "pc")
	der, _, err := ca.SignDeviceCSR(csr, "dev-1", false, now)
	if err != nil {
		f.Fatal(err)
	}
	newKey, _ := pki.NewDeviceKey()
	newCSR, _ := pki.NewCSR(newKey, "pc")
	sig, _ := ecdsa.SignASN1(rand.Reader, key, pki.ReenrollDigest(newCSR))
	f.Add(der, sig, newCSR)
	f.Add(der, []byte{0x30, 0x00}, newCSR)
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, sig, []byte{})
	f.Add(der[:len(der)/2], sig, newCSR)
	s := &AgentService{ca: ca}
	f.Fuzz(func(t *testing.T, cert, sig, csr []byte) {
		id, serial, err := s.checkKeyProof(&mamoriv1.EnrollRequest{Csr: csr, KeyProof: &mamoriv1.KeyProof{Certificate: cert, Signature: sig}})
		if err != nil {
			if id != "" || serial != "" {
				t.Fatalf("refused proof named %q %q", id, serial)
			}
			return
		}
		c, perr := x509.ParseCertificate(cert)
		if perr != nil || c.CheckSignatureFrom(ca.Cert) != nil {
			t.Fatalf("accepted a proof whose certificate is not this CA's (%v)", perr)
		}
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || !ecdsa.VerifyASN1(pub, pki.ReenrollDigest(csr), sig) || id == "" {
			t.Fatal("accepted a proof whose signature does not verify")
		}
	})
}

// A refused crowd's retry hints stop at MaxRetryHint: at 1 per 1000 s, the
// 30th refused caller used to be told 8 hours.
func TestBucketHintCapped(t *testing.T) {
	b := newBuckets(0.001, 1)
	t0 := time.Unix(1000, 0)
	b.take("k", t0)
	for i := range 30 {
		ok, wait := b.take("k", t0)
		if ok || wait > MaxRetryHint || wait <= 0 {
			t.Fatalf("call %d: ok %v wait %v, want refused with at most %v", i, ok, wait, MaxRetryHint)
		}
	}
	if ok, wait := b.peek("k", t0); ok || wait > MaxRetryHint {
		t.Errorf("peek: %v %v", ok, wait)
	}
	if ok, _ := b.peek("other", t0); !ok {
		t.Error("peek of an unknown key refused")
	}
}
