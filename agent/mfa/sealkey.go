package mfa

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/tpm"
)

// Files of the sealed bundle key (see seal.go).
const (
	sealedKeyFile = "bundle.key.sealed" // the HPKE private key, sealed
	sealKeyFile   = "seal.key"          // FileSealer's data key (no TPM)
)

// transient tells a failure to reach the TPM from the TPM's answer that
// the blob does not load or unseal (another TPM, cleared, damaged) or a
// ciphertext that does not decrypt: only the latter make a new key.
func transient(kind string, err error) bool {
	var rc tpm2.TPMRC
	return kind == SealerTPM && !errors.As(err, &rc) && !errors.Is(err, errUndecryptable) && !errors.Is(err, tpm.ErrBadBlob)
}

func (v *Verifier) sealer() Sealer {
	if v.cfg.Sealer != nil {
		return v.cfg.Sealer
	}
	return v.fileSealer()
}

func (v *Verifier) fileSealer() FileSealer {
	return FileSealer{KeyPath: filepath.Join(v.cfg.Dir, sealKeyFile)}
}

// SealerKind is the kind of sealer that holds the bundle key ("tpm",
// "file"), for status and evidence.
func (v *Verifier) SealerKind() string { return v.sealer().Kind() }

// loadKey opens the bundle key from bundle.key.sealed, migrating what
// older agents or a TPM-less start left behind:
//
//	bundle.key (plain)          → sealed with the current sealer, removed
//	sealed by "file", TPM now   → re-sealed by the TPM, seal.key removed
//	the TPM says it does not load or unseal (other TPM, TPM cleared,
//	damaged)                    → a new key; the old bundle is dropped and
//	                              the server sends a new one (the report
//	                              carries the new public key)
//	sealed by the TPM, but no TPM now, or the TPM does not answer
//	                            → an error: nothing is destroyed, MFA
//	                              logins are refused until it opens
//	nothing                     → a new key
func (v *Verifier) loadKey() error {
	s := v.sealer()
	sealedPath := filepath.Join(v.cfg.Dir, sealedKeyFile)
	plainPath := filepath.Join(v.cfg.Dir, keyFile)
	var (
		raw     []byte
		reseal  bool
		cleanup []string
	)
	if b, err := os.ReadFile(sealedPath); err == nil {
		e, perr := parseEnvelope(b)
		switch {
		case perr != nil:
			v.log.Error("mfa: sealed bundle key is damaged; making a new key (the server resends the bundle)", "error", perr)
		case e.Sealer == s.Kind():
			if raw, err = s.Unseal(b); err != nil && transient(e.Sealer, err) {
				// The TPM did not answer (device busy or gone): keep
				// the key and the bundle; logins are refused until a
				// restart opens them.
				return fmt.Errorf("mfa: the TPM did not answer while unsealing the bundle key (restart the agent): %w", err)
			} else if err != nil {
				v.log.Error("mfa: sealed bundle key does not unseal on this terminal; making a new key (the server resends the bundle)", "sealer", e.Sealer, "error", err)
				raw = nil
			}
		case e.Sealer == SealerFile:
			fs := v.fileSealer()
			if raw, err = fs.Unseal(b); err != nil {
				v.log.Error("mfa: file-sealed bundle key does not open; making a new key", "error", err)
				raw = nil
			} else {
				reseal, cleanup = true, append(cleanup, fs.KeyPath)
				v.log.Info("mfa: bundle key moves from the key file into the TPM")
			}
		default:
			// Sealed by a TPM, and this start has none: a driver not
			// up yet must not cost the key. An officer decides.
			return fmt.Errorf("mfa: the bundle key is sealed by the TPM, but no TPM is usable now; if it is gone for good, delete %s and restart (the server sends the bundle again)", sealedPath)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mfa: %w", err)
	} else if b, err := os.ReadFile(plainPath); err == nil {
		raw, reseal = b, true
		v.log.Info("mfa: sealing the bundle key that older agents kept in the clear", "sealer", s.Kind())
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mfa: %w", err)
	}
	if raw == nil {
		k, err := mfabundle.GenerateKey()
		if err != nil {
			return fmt.Errorf("mfa: %w", err)
		}
		if raw, err = mfabundle.PrivateKeyBytes(k); err != nil {
			return fmt.Errorf("mfa: %w", err)
		}
		reseal = true
		// A new key cannot open an old bundle.
		os.Remove(filepath.Join(v.cfg.Dir, bundleFile))
	}
	defer clear(raw)
	k, err := mfabundle.PrivateKey(raw)
	if err != nil {
		return fmt.Errorf("mfa: bundle key: %w", err)
	}
	if reseal {
		sealed, err := s.Seal(raw)
		if err != nil {
			return fmt.Errorf("mfa: seal the bundle key (%s): %w", s.Kind(), err)
		}
		if err := atomicfile.Write(sealedPath, sealed, 0o600); err != nil {
			return fmt.Errorf("mfa: %w", err)
		}
		// Only once the sealed key is on disk: the clear copy goes.
		cleanup = append(cleanup, plainPath)
		for _, p := range cleanup {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				v.log.Error("mfa: could not remove a superseded key file", "path", p, "error", err)
			}
		}
	}
	v.key, v.pub = k, mfabundle.PublicKeyBytes(k)
	return nil
}
