package mfa_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

func TestSealers(t *testing.T) {
	secret := []byte("the HPKE private key, 32 bytes!!")
	tests := []struct {
		name   string
		sealer func(t *testing.T) mfa.Sealer
	}{
		{"file", func(t *testing.T) mfa.Sealer { return mfa.FileSealer{KeyPath: filepath.Join(t.TempDir(), "seal.key")} }},
		{"tpm-simulator", func(t *testing.T) mfa.Sealer { return mfa.TPMSealer{TPM: mfa.NewTPM(tpmtest.Open(t, 1))} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sealer(t)
			sealed, err := s.Seal(secret)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(sealed, secret[:16]) {
				t.Fatal("secret in the clear in the envelope")
			}
			got, err := s.Unseal(sealed)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("round trip: %q, %v", got, err)
			}
			// Tamper with the ciphertext, and with the sealed TPM blob.
			type env struct {
				V      int    `json:"v"`
				Sealer string `json:"sealer"`
				TPM    *struct {
					Public  []byte `json:"public"`
					Private []byte `json:"private"`
				} `json:"tpm,omitempty"`
				Nonce      []byte `json:"nonce"`
				Ciphertext []byte `json:"ciphertext"`
			}
			var e env
			must(t, json.Unmarshal(sealed, &e))
			e.Ciphertext[3] ^= 1
			bad, _ := json.Marshal(e)
			if _, err := s.Unseal(bad); err == nil {
				t.Fatal("tampered ciphertext unsealed")
			}
			e.Ciphertext[3] ^= 1
			if ok, _ := json.Marshal(e); ok != nil {
				if _, err := s.Unseal(ok); err != nil {
					t.Fatalf("re-encoded envelope: %v", err)
				}
			}
			if e.TPM != nil {
				e.TPM.Private[10] ^= 1
				bad, _ := json.Marshal(e)
				if _, err := s.Unseal(bad); err == nil {
					t.Fatal("tampered TPM blob unsealed")
				}
			}
		})
	}
	// A file-sealed envelope is not opened by the TPM sealer, nor vice versa.
	fs := mfa.FileSealer{KeyPath: filepath.Join(t.TempDir(), "seal.key")}
	sealed, _ := fs.Seal(secret)
	if _, err := (mfa.TPMSealer{TPM: mfa.NewTPM(tpmtest.Open(t, 1))}).Unseal(sealed); err == nil || !strings.Contains(err.Error(), "not by the TPM") {
		t.Fatalf("TPM sealer on a file envelope: %v", err)
	}
}

// TestBundleKeyMigration: a plain bundle.key from an older agent is sealed
// and removed; a file-sealed key moves into the TPM when one appears; on
// another TPM the key does not unseal, and the agent starts over with a
// new key (the server resends the bundle).
func TestBundleKeyMigration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	u := mfatest.NewUser(t, "tanaka")
	openWith := func(s mfa.Sealer) *mfa.Verifier {
		t.Helper()
		cfg := mfa.DefaultConfig()
		cfg.Dir, cfg.Events, cfg.Now, cfg.Sealer = dir, ev, c.now, s
		v, err := mfa.Open(cfg, "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := openWith(nil)
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
	pub := v.PublicKey()

	// Make the layout an older agent left: bundle.key in the clear.
	fs := mfa.FileSealer{KeyPath: filepath.Join(dir, "seal.key")}
	sealed, err := os.ReadFile(filepath.Join(dir, "bundle.key.sealed"))
	must(t, err)
	raw, err := fs.Unseal(sealed)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "bundle.key"), raw, 0o600))
	must(t, os.Remove(filepath.Join(dir, "bundle.key.sealed")))
	must(t, os.Remove(filepath.Join(dir, "seal.key")))

	v = openWith(nil)
	if !bytes.Equal(v.PublicKey(), pub) || v.BundleVersion() != "g1" {
		t.Fatal("plain key not carried over")
	}
	if _, err := os.Stat(filepath.Join(dir, "bundle.key")); !os.IsNotExist(err) {
		t.Fatalf("plain bundle.key still there: %v", err)
	}

	// A TPM appears: the key moves into it, seal.key goes.
	tp := tpmtest.Open(t, 1)
	v = openWith(mfa.TPMSealer{TPM: mfa.NewTPM(tp)})
	if !bytes.Equal(v.PublicKey(), pub) || v.BundleVersion() != "g1" || v.SealerKind() != "tpm" {
		t.Fatal("file-sealed key not carried into the TPM")
	}
	if _, err := os.Stat(filepath.Join(dir, "seal.key")); !os.IsNotExist(err) {
		t.Fatalf("seal.key still there: %v", err)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
		t.Fatalf("TOTP with the TPM-sealed bundle key: %v", got)
	}
	for _, f := range []string{"bundle.key.sealed", "bundle.sealed"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(b, raw) || bytes.Contains(b, u.Secret) {
			t.Fatalf("%s holds a secret in the clear", f)
		}
	}
	// Same TPM again: opens.
	v = openWith(mfa.TPMSealer{TPM: mfa.NewTPM(tp)})
	if !bytes.Equal(v.PublicKey(), pub) {
		t.Fatal("TPM-sealed key did not reopen")
	}
	// The TPM does not answer (busy, driver gone): the agent refuses to
	// start MFA but destroys nothing.
	_, err = mfa.Open(func() mfa.Config {
		cfg := mfa.DefaultConfig()
		cfg.Dir, cfg.Events, cfg.Now, cfg.Sealer = dir, ev, c.now, mfa.TPMSealer{TPM: mfa.NewTPM(deadTPM{})}
		return cfg
	}(), "dev-1")
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("unreachable TPM: %v", err)
	}
	v = openWith(mfa.TPMSealer{TPM: mfa.NewTPM(tp)})
	if !bytes.Equal(v.PublicKey(), pub) || v.BundleVersion() != "g1" {
		t.Fatal("key or bundle lost after the TPM failed to answer")
	}
	tp.Close()

	// The directory on another terminal (another TPM): nothing opens.
	v = openWith(mfa.TPMSealer{TPM: mfa.NewTPM(tpmtest.Open(t, 2))})
	if bytes.Equal(v.PublicKey(), pub) || v.BundleVersion() != "" {
		t.Fatal("the bundle key opened on another TPM")
	}
}

type deadTPM struct{}

func (deadTPM) Send([]byte) ([]byte, error) { return nil, errors.New("tpm: device unreachable") }
