// Package mfabundle is the one format both sides of MFA share: the HPKE
// sealing of a device's MFA bundle (the server seals, the agent opens) and
// the salted hash of one-time recovery codes (the server stores it, the
// agent and pam_mamori.so check it). It does no I/O.
package mfabundle

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// The suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

const infoPrefix = "mamori mfa bundle v1 "

// MaxSealed bounds a sealed bundle (about 200 bytes a user).
const MaxSealed = 4 << 20

// GenerateKey makes a device's bundle key.
func GenerateKey() (hpke.PrivateKey, error) { return kem.GenerateKey() }

// PrivateKey reads a key serialised with PrivateKeyBytes.
func PrivateKey(b []byte) (hpke.PrivateKey, error) { return kem.NewPrivateKey(b) }

// PrivateKeyBytes serialises k.
func PrivateKeyBytes(k hpke.PrivateKey) ([]byte, error) { return k.Bytes() }

// PublicKeyBytes is what the agent sends in ReportRequest.hpke_public_key.
func PublicKeyBytes(k hpke.PrivateKey) []byte { return k.PublicKey().Bytes() }

// Seal seals b to the device whose public key is pub; the device ID is
// bound in, so a bundle opens only for the device it was made for.
func Seal(pub []byte, deviceID string, b *mamoriv1.MFABundle) ([]byte, error) {
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("mfa bundle: device key: %w", err)
	}
	msg, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("mfa bundle: %w", err)
	}
	return hpke.Seal(pk, kdf, aead, []byte(infoPrefix+deviceID), msg)
}

// Open opens a bundle sealed for deviceID.
func Open(k hpke.PrivateKey, deviceID string, sealed []byte) (*mamoriv1.MFABundle, error) {
	if len(sealed) > MaxSealed {
		return nil, errors.New("mfa bundle: too large")
	}
	msg, err := hpke.Open(k, kdf, aead, []byte(infoPrefix+deviceID), sealed)
	if err != nil {
		return nil, fmt.Errorf("mfa bundle: open: %w", err)
	}
	b := &mamoriv1.MFABundle{}
	if err := proto.Unmarshal(msg, b); err != nil {
		return nil, fmt.Errorf("mfa bundle: %w", err)
	}
	if b.DeviceId != deviceID {
		return nil, errors.New("mfa bundle: made for another device")
	}
	return b, nil
}

// Recovery codes: 10 characters from an alphabet without look-alikes
// (no 0/O, 1/I/L), printed as XXXXX-XXXXX: 50 bits each.
const codeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// CodeLength is the length of a normalised recovery code.
const CodeLength = 10

// NewRecoveryCodes makes n codes.
func NewRecoveryCodes(n int) ([]string, error) {
	codes := make([]string, n)
	for i := range codes {
		var b strings.Builder
		for j := range CodeLength {
			if j == 5 {
				b.WriteByte('-')
			}
			n, err := rand.Int(rand.Reader, big.NewInt(int64(len(codeAlphabet))))
			if err != nil {
				return nil, fmt.Errorf("recovery codes: %w", err)
			}
			b.WriteByte(codeAlphabet[n.Int64()])
		}
		codes[i] = b.String()
	}
	return codes, nil
}

// NormalizeCode upper-cases and drops '-' and spaces; pam_mamori.c does the
// same.
func NormalizeCode(code string) string {
	var b strings.Builder
	for _, r := range code {
		switch {
		case r == '-' || r == ' ':
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// LooksLikeRecoveryCode says whether a normalised answer has the shape of
// a recovery code (as opposed to a TOTP code).
func LooksLikeRecoveryCode(norm string) bool {
	if len(norm) != CodeLength {
		return false
	}
	for i := 0; i < len(norm); i++ {
		if !strings.ContainsRune(codeAlphabet, rune(norm[i])) {
			return false
		}
	}
	return true
}

// HashRecoveryCode is hex SHA-256(salt || normalised code).
func HashRecoveryCode(salt []byte, code string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(NormalizeCode(code)))
	return hex.EncodeToString(h.Sum(nil))
}
