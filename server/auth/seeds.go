package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Operators' console TOTP seeds at rest (issue 14 item 8): sealed as the
// terminal users' seeds are (server/mfa: AES-256-GCM, the owner as
// associated data, so a sealed seed cannot be moved to another
// operator), under a key derived from the same data-directory key
// (mfa.key, HKDF-SHA256 with a label of its own), so backups stay one
// file. The column keeps text: "sealed:v1:" and base64 of nonce and
// ciphertext.

// sealedPrefix marks a sealed seed; a value without it is a plain seed
// written before sealing (SealAll migrates those).
const sealedPrefix = "sealed:v1:"

// SeedKey seals and opens operators' TOTP seeds.
type SeedKey struct{ aead cipher.AEAD }

// String never prints key bytes.
func (*SeedKey) String() string { return "[operator seed key]" }

// NewSeedKey derives the seed key from the data directory's 32-byte MFA
// key.
func NewSeedKey(mfaKey []byte) (*SeedKey, error) {
	if len(mfaKey) != 32 {
		return nil, fmt.Errorf("operator seed key: %d key bytes, want 32", len(mfaKey))
	}
	k, err := hkdf.Key(sha256.New, mfaKey, nil, "mamori operator TOTP seed v1", 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &SeedKey{aead: a}, nil
}

func seedAD(operatorID string) []byte { return []byte("mamori operator TOTP seed\x00" + operatorID) }

// Seal returns what is stored for operator operatorID's seed.
func (k *SeedKey) Seal(operatorID string, seed Secret) string {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return sealedPrefix + base64.StdEncoding.EncodeToString(k.aead.Seal(nonce, nonce, []byte(seed.Reveal()), seedAD(operatorID)))
}

// ErrSealedSeed: a stored seed that does not open (another key, another
// operator's, damaged).
var ErrSealedSeed = errors.New("operator TOTP seed does not open with this server's key")

// Open returns the seed stored for operatorID. plain reports a value
// stored before sealing, which Open returns as it is.
func (k *SeedKey) Open(operatorID, stored string) (seed Secret, plain bool, err error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return Secret(stored), true, nil
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	n := k.aead.NonceSize()
	if err != nil || len(raw) < n+k.aead.Overhead() {
		return "", false, ErrSealedSeed
	}
	pt, err := k.aead.Open(nil, raw[:n], raw[n:], seedAD(operatorID))
	if err != nil {
		return "", false, ErrSealedSeed
	}
	return Secret(pt), false, nil
}

// IsSealed reports whether a stored seed is sealed.
func IsSealed(stored string) bool { return strings.HasPrefix(stored, sealedPrefix) }
