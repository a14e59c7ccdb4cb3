package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

func TestKeySignsAndVerifies(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	k, err := tpm.CreateKey(tp)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		d := h.New()
		d.Write([]byte("hello"))
		sig, err := k.Sign(rand.Reader, d.Sum(nil), h)
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d.Sum(nil), sig) {
			t.Errorf("%v: signature does not verify", h)
		}
	}
	// The stored blob loads again on the same TPM and is the same key.
	k.Close()
	k2, err := tpm.LoadKey(tp, k.Blob())
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Error("reloaded key differs")
	}
	if _, err := k2.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

// TestKeyCannotBeExported: there is no private key in the process, the
// TPM refuses to duplicate the key (fixedParent), and the blob does not
// load into another TPM.
func TestKeyCannotBeExported(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	k, err := tpm.CreateKey(tp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.MarshalPKCS8PrivateKey(k); err == nil {
		t.Error("the signer marshalled as a private key")
	}
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: k.Handle().Handle, Name: k.Handle().Name, Auth: tpm2.PasswordAuth(nil)},
		NewParentHandle: tpm2.NamedHandle{Handle: tpm2.TPMRHNull, Name: tpm2.HandleName(tpm2.TPMRHNull)},
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(tp)
	if err == nil {
		t.Fatal("the TPM duplicated (exported) the device key")
	}
	t.Logf("duplicate refused as expected: %v", err)
	_ = srk
	// The private part of the blob is encrypted by this TPM's SRK: it is
	// not the scalar of the public key in any readable form.
	blob := k.Blob()
	if len(blob.Private) < 64 {
		t.Errorf("private blob suspiciously short: %d", len(blob.Private))
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	other := tpmtest.Open(t, 2)
	if _, err := tpm.LoadKey(other, blob); err == nil {
		t.Fatal("the key blob loaded into another TPM")
	} else if !strings.Contains(err.Error(), "another terminal") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

func TestAttestAndActivate(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	k, err := tpm.CreateKey(tp)
	if err != nil {
		t.Fatal(err)
	}
	nonce := sha256.Sum256([]byte("csr"))
	a, ev, err := tpm.Attest(k, nonce[:])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	akPub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	akName, _ := tpm2.ObjectName(akPub)
	ekKey, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	blob, secret, err := tpm2.CreateCredential(rand.Reader, ekKey, akName.Buffer, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Activate(blob, secret)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "0123456789abcdef" {
		t.Errorf("activated %q", got)
	}
}

// TestSimulatorStaysOutOfTheAgent: the cgo simulator is for tests only.
func TestSimulatorStaysOutOfTheAgent(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		cmd := exec.Command("go", "list", "-deps", "github.com/mamori-dev/mamori/agent/cmd/mamori-agent", "github.com/mamori-dev/mamori/server/cmd/mamori-server")
		cmd.Env = append(cmd.Environ(), "GOOS="+goos)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		for _, p := range strings.Fields(string(out)) {
			if strings.Contains(p, "go-tpm-tools") || strings.HasSuffix(p, "/tpmtest") {
				t.Errorf("GOOS=%s: a binary depends on %s", goos, p)
			}
		}
	}
}
