package mfabundle

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// TempCodeLength is the length of a normalised temporary code: 12
// characters of the recovery-code alphabet (60 bits), printed
// XXXX-XXXX-XXXX. The length tells it apart from a TOTP code (digits) and a
// recovery code (10 characters).
const TempCodeLength = 12

// NewTempCode makes a temporary code.
func NewTempCode() (string, error) {
	var b strings.Builder
	for j := range TempCodeLength {
		if j > 0 && j%4 == 0 {
			b.WriteByte('-')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(codeAlphabet))))
		if err != nil {
			return "", fmt.Errorf("temporary code: %w", err)
		}
		b.WriteByte(codeAlphabet[n.Int64()])
	}
	return b.String(), nil
}

// LooksLikeTempCode says whether a normalised answer has the shape of a
// temporary code.
func LooksLikeTempCode(norm string) bool {
	if len(norm) != TempCodeLength {
		return false
	}
	for i := 0; i < len(norm); i++ {
		if !strings.ContainsRune(codeAlphabet, rune(norm[i])) {
			return false
		}
	}
	return true
}

// CodeID names a used recovery or temporary code in events and audit
// records without revealing anything about it: the first 16 hex digits of
// SHA-256("mamori code id\x00" || hash), where hash is the code's hex
// salted hash (HashRecoveryCode). The server computes the same ID over the
// hashes it holds to find the code a terminal reported.
func CodeID(hash string) string {
	s := sha256.Sum256([]byte("mamori code id\x00" + hash))
	return hex.EncodeToString(s[:8])
}
