package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// TestSwtpm: the same key, attestation and activation against swtpm, a
// TPM in another process over a socket (as /dev/tpmrm0 or TBS would be).
func TestSwtpm(t *testing.T) {
	tp := tpmtest.Swtpm(t)
	k, err := tpm.CreateKey(tp)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("hello"))
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("sign on swtpm: %v", err)
	}
	a, ev, err := tpm.Attest(k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ekPub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EKPublic)
	akPub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	akName, _ := tpm2.ObjectName(akPub)
	ek, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	blob, enc, err := tpm2.CreateCredential(rand.Reader, ek, akName.Buffer, []byte("swtpm secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Activate(blob, enc); err != nil || string(got) != "swtpm secret" {
		t.Fatalf("activate on swtpm: %q, %v", got, err)
	}
	// Another swtpm is another machine: the blob does not load there.
	other := tpmtest.Swtpm(t)
	if _, err := tpm.LoadKey(other, k.Blob()); err == nil {
		t.Fatal("key blob loaded into another swtpm")
	}
}
