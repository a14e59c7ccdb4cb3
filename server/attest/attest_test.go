package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
	"github.com/mamori-dev/mamori/server/attest"
)

// prover is one simulated terminal with a device key and an attestation
// in progress.
type prover struct {
	key *tpm.Key
	att *tpm.Attestation
	ev  attest.Evidence
}

var nonce = func() []byte { s := sha256.Sum256([]byte("the CSR")); return s[:] }()

func newProver(t *testing.T, seed int64) *prover {
	t.Helper()
	tp := tpmtest.Open(t, seed)
	k, err := tpm.CreateKey(tp)
	if err != nil {
		t.Fatal(err)
	}
	a, ev, err := tpm.Attest(k, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return &prover{key: k, att: a, ev: attest.Evidence{
		EKPublic: ev.EKPublic, EKCertificate: ev.EKCertificate, AKPublic: ev.AKPublic, KeyPublic: ev.KeyPublic,
		CertifyInfo: ev.CertifyInfo, CertifySignature: ev.CertifySignature,
		CSRPublicKey: k.Public(), QualifyingData: nonce, Binding: []byte("token+csr"),
	}}
}

func verifier(t *testing.T, now func() time.Time) *attest.Verifier {
	t.Helper()
	cfg := attest.DefaultConfig()
	cfg.Now = now
	v, err := attest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGenuineTPM(t *testing.T) {
	clock := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	v := verifier(t, func() time.Time { return clock })
	p := newProver(t, 1)
	c, err := v.Check(p.ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EKFingerprint) != 64 {
		t.Errorf("EK fingerprint %q", c.EKFingerprint)
	}
	ch, err := v.Challenge(c)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := p.att.Activate(ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(c, ch.State, secret); err != nil {
		t.Fatalf("genuine answer refused: %v", err)
	}
	// The same answer for another request (other binding) is refused.
	other := p.ev
	other.Binding = []byte("another token")
	oc, err := v.Check(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(oc, ch.State, secret); !errors.Is(err, attest.ErrRefused) {
		t.Errorf("answer replayed for another request: %v", err)
	}
	// A guessed secret is refused.
	if err := v.Verify(c, ch.State, make([]byte, 32)); !errors.Is(err, attest.ErrRefused) {
		t.Errorf("guessed secret: %v", err)
	}
	// Another server (another sealing key) does not accept the state.
	if err := verifier(t, nil).Verify(c, ch.State, secret); !errors.Is(err, attest.ErrRefused) {
		t.Errorf("state accepted by another verifier: %v", err)
	}
	// An expired challenge is refused.
	clock = clock.Add(6 * time.Minute)
	if err := v.Verify(c, ch.State, secret); !errors.Is(err, attest.ErrRefused) {
		t.Errorf("expired challenge: %v", err)
	}
}

// TestChallengeForAnotherTPM: a challenge encrypted to another TPM's EK
// cannot be activated here, so evidence naming someone else's EK fails.
func TestChallengeForAnotherTPM(t *testing.T) {
	// Machine B: only its EK public key is needed.
	tpB := tpmtest.Open(t, 2)
	ekB, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpm2.ECCEKTemplate)}.Execute(tpB)
	if err != nil {
		t.Fatal(err)
	}
	ekBPub, _ := ekB.OutPublic.Contents()
	tpB.Close()

	p := newProver(t, 1) // machine A
	ev := p.ev
	ev.EKPublic = tpm2.Marshal(ekBPub)
	v := verifier(t, nil)
	c, err := v.Check(ev)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := v.Challenge(c)
	if err != nil {
		t.Fatal(err)
	}
	if secret, err := p.att.Activate(ch.CredentialBlob, ch.EncryptedSecret); err == nil {
		t.Fatalf("TPM A activated a challenge encrypted to TPM B's EK (secret %x)", secret)
	} else {
		t.Logf("activation refused as expected: %v", err)
	}
}

// TestForgedCertify: evidence for a key that is not in the TPM is refused,
// either at once (signature, names, CSR) or because the TPM cannot answer
// the challenge for an AK it does not hold.
func TestForgedCertify(t *testing.T) {
	p := newProver(t, 1)
	v := verifier(t, nil)
	sw, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	swPub := tpmPublic(tpm.KeyTemplate, sw)
	fakeAK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fakeAKPub := tpmPublic(tpm.AKTemplate, fakeAK)
	swName, _ := tpm2.ObjectName(&swPub)
	forgedInfo := tpm2.Marshal(&tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestCertify,
		ExtraData: tpm2.TPM2BData{Buffer: nonce},
		Attested:  tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: *swName}),
	})

	static := []struct {
		name   string
		modify func(*attest.Evidence)
	}{
		{"CSR for a software key", func(e *attest.Evidence) { e.CSRPublicKey = &sw.PublicKey }},
		{"software key described as a TPM key", func(e *attest.Evidence) {
			e.CSRPublicKey, e.KeyPublic = &sw.PublicKey, tpm2.Marshal(&swPub)
		}},
		{"certify info forged, signed outside the TPM by another key", func(e *attest.Evidence) {
			e.CSRPublicKey, e.KeyPublic = &sw.PublicKey, tpm2.Marshal(&swPub)
			e.CertifyInfo, e.CertifySignature = forgedInfo, signAttest(t, fakeAK, forgedInfo)
		}},
		{"certify for another request", func(e *attest.Evidence) { e.QualifyingData = []byte("other") }},
		{"exportable key", func(e *attest.Evidence) {
			pub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](e.KeyPublic)
			pub.ObjectAttributes.FixedTPM = false
			e.KeyPublic = tpm2.Marshal(pub)
		}},
		{"AK not restricted", func(e *attest.Evidence) {
			pub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](e.AKPublic)
			pub.ObjectAttributes.Restricted = false
			e.AKPublic = tpm2.Marshal(pub)
		}},
	}
	for _, tc := range static {
		t.Run(tc.name, func(t *testing.T) {
			ev := p.ev
			tc.modify(&ev)
			if _, err := v.Check(ev); !errors.Is(err, attest.ErrRefused) {
				t.Errorf("Check = %v, want refused", err)
			} else {
				t.Log(err)
			}
		})
	}

	// The whole AK forged in software: every signature checks out offline,
	// but the challenge is bound to the fake AK's name, which no TPM holds.
	t.Run("AK forged in software", func(t *testing.T) {
		ev := p.ev
		ev.CSRPublicKey, ev.KeyPublic = &sw.PublicKey, tpm2.Marshal(&swPub)
		ev.AKPublic = tpm2.Marshal(&fakeAKPub)
		ev.CertifyInfo, ev.CertifySignature = forgedInfo, signAttest(t, fakeAK, forgedInfo)
		c, err := v.Check(ev)
		if err != nil {
			t.Fatalf("Check: %v (the offline checks cannot see this forgery; the challenge must)", err)
		}
		ch, err := v.Challenge(c)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := p.att.Activate(ch.CredentialBlob, ch.EncryptedSecret)
		if err == nil {
			t.Fatal("the TPM activated a credential bound to an AK it does not hold")
		}
		if err := v.Verify(c, ch.State, secret); !errors.Is(err, attest.ErrRefused) {
			t.Errorf("Verify = %v, want refused", err)
		}
	})
}

func tpmPublic(tmpl tpm2.TPMTPublic, k *ecdsa.PrivateKey) tpm2.TPMTPublic {
	x, y := k.X.FillBytes(make([]byte, 32)), k.Y.FillBytes(make([]byte, 32))
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y},
	})
	return tmpl
}

func signAttest(t *testing.T, k *ecdsa.PrivateKey, info []byte) []byte {
	t.Helper()
	d := sha256.Sum256(info)
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(&tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.Bytes()},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.Bytes()},
		}),
	})
}
