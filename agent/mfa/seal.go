package mfa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/tpm"
)

// Sealing keeps the key that opens the MFA bundle (and with it every
// user's TOTP secret) out of reach of whoever copies the state directory.
//
// The bundle itself stays as the server sealed it (HPKE to this
// terminal's bundle key, device ID bound, bundle.sealed); what is sealed
// here is that HPKE private key, in bundle.key.sealed:
//
//   - TPMSealer: a fresh AES-256 data key is sealed by the TPM
//     (TPM2_Create sealed-data object under the SRK, internal/tpm.Seal,
//     no PCR policy: see the reasoning there) and encrypts the secret
//     with AES-256-GCM. Only this terminal's TPM opens it.
//   - FileSealer (no TPM): the data key is a random 32-byte file, root
//     0600, next to the sealed file. It keeps secrets off backups of the
//     sealed files alone, no more: root on the terminal can read both.
//
// The envelope names its sealer, so the agent can migrate: a plain
// bundle.key (older agents) is sealed and removed on start, and a
// file-sealed key is re-sealed by the TPM once one is usable.

// Sealer seals small secrets for this terminal. Seal's output is a
// self-describing envelope (sealerKind tells which sealer made it).
type Sealer interface {
	// Kind is "tpm" or "file".
	Kind() string
	Seal(plaintext []byte) ([]byte, error)
	Unseal(sealed []byte) ([]byte, error)
}

// Sealer kinds.
const (
	SealerTPM  = "tpm"
	SealerFile = "file"
)

// envelope is the sealed file's format (JSON, base64 fields).
type envelope struct {
	V          int       `json:"v"`
	Sealer     string    `json:"sealer"`
	TPM        *tpm.Blob `json:"tpm,omitempty"` // the sealed data key
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
}

// errUndecryptable: the envelope's ciphertext does not open with its key.
var errUndecryptable = errors.New("sealed file: does not decrypt (damaged, or sealed with another key)")

func aad(kind string) []byte { return []byte("mamori sealed v1 " + kind) }

func parseEnvelope(b []byte) (envelope, error) {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return envelope{}, fmt.Errorf("sealed file: %w", err)
	}
	if e.V != 1 || (e.Sealer != SealerTPM && e.Sealer != SealerFile) {
		return envelope{}, fmt.Errorf("sealed file: unknown version %d or sealer %q", e.V, e.Sealer)
	}
	return e, nil
}

func gcmSeal(key []byte, kind string, plaintext []byte) (nonce, ct []byte, err error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return nonce, g.Seal(nil, nonce, plaintext, aad(kind)), nil
}

func gcmOpen(key []byte, e envelope) ([]byte, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	if len(e.Nonce) != g.NonceSize() {
		return nil, errors.New("sealed file: bad nonce")
	}
	pt, err := g.Open(nil, e.Nonce, e.Ciphertext, aad(e.Sealer))
	if err != nil {
		return nil, errUndecryptable
	}
	return pt, nil
}

// TPM is the TPM the MFA code uses (sealing and PIN keys), one operation
// at a time: some TPMs (and the simulator) hold only three transient
// objects, and swtpm serves one connection.
type TPM struct {
	mu sync.Mutex
	t  transport.TPM
}

// NewTPM wraps a transport (the agent opens its own: internal/tpm.Open).
func NewTPM(t transport.TPM) *TPM { return &TPM{t: t} }

func (t *TPM) do(f func(transport.TPM) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return f(t.t)
}

// TPMSealer seals with the TPM.
type TPMSealer struct{ TPM *TPM }

// Kind implements Sealer.
func (TPMSealer) Kind() string { return SealerTPM }

// Seal implements Sealer.
func (s TPMSealer) Seal(plaintext []byte) ([]byte, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	defer clear(dek)
	var blob tpm.Blob
	if err := s.TPM.do(func(t transport.TPM) (err error) { blob, err = tpm.Seal(t, dek); return }); err != nil {
		return nil, err
	}
	nonce, ct, err := gcmSeal(dek, SealerTPM, plaintext)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: 1, Sealer: SealerTPM, TPM: &blob, Nonce: nonce, Ciphertext: ct})
}

// Unseal implements Sealer.
func (s TPMSealer) Unseal(sealed []byte) ([]byte, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return nil, err
	}
	if e.Sealer != SealerTPM || e.TPM == nil {
		return nil, fmt.Errorf("sealed file: sealed by %q, not by the TPM", e.Sealer)
	}
	var dek []byte
	if err := s.TPM.do(func(t transport.TPM) (err error) { dek, err = tpm.Unseal(t, *e.TPM); return }); err != nil {
		return nil, err
	}
	defer clear(dek)
	return gcmOpen(dek, e)
}

// FileSealer seals with a random key kept in KeyPath (0600, created on
// first use).
type FileSealer struct{ KeyPath string }

// Kind implements Sealer.
func (FileSealer) Kind() string { return SealerFile }

func (s FileSealer) key(create bool) ([]byte, error) {
	b, err := os.ReadFile(s.KeyPath)
	if errors.Is(err, os.ErrNotExist) && create {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(s.KeyPath, b, 0o600); err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("seal key %s: damaged (%d bytes)", s.KeyPath, len(b))
	}
	return b, nil
}

// Seal implements Sealer.
func (s FileSealer) Seal(plaintext []byte) ([]byte, error) {
	k, err := s.key(true)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	nonce, ct, err := gcmSeal(k, SealerFile, plaintext)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: 1, Sealer: SealerFile, Nonce: nonce, Ciphertext: ct})
}

// Unseal implements Sealer.
func (s FileSealer) Unseal(sealed []byte) ([]byte, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return nil, err
	}
	if e.Sealer != SealerFile {
		return nil, fmt.Errorf("sealed file: sealed by %q, not by a key file", e.Sealer)
	}
	k, err := s.key(false)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	return gcmOpen(k, e)
}
