package mfa

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/server/store"
)

// Temporary code lifetimes.
const (
	DefaultTempCodeTTL = time.Hour
	MaxTempCodeTTL     = 24 * time.Hour
	MinTempCodeTTL     = time.Minute
)

// ImportRecord is the stored record of a hardware token: its seed sealed
// like an app's, SHA-1, 6 digits, 30 s (what TOTP hardware tokens use),
// no recovery codes (the helpdesk issues temporary codes instead).
func (k *Key) ImportRecord(r SeedRow, operatorID string, now time.Time) store.MFAUser {
	p := totp.Default()
	return store.MFAUser{
		User: r.User, SealedSecret: k.seal(r.User, r.Seed), Algorithm: string(p.Algorithm), Digits: p.Digits,
		PeriodSeconds: int(p.Period / time.Second), RecoverySalt: []byte{}, CreatedAt: now, CreatedBy: operatorID,
		Method: store.MFAMethodTOTPHardware, TokenSerial: r.Serial,
	}
}

// NewTempCode makes a temporary code for user valid for ttl and returns
// the code (shown once) and its stored, hashed form.
func NewTempCode(user, operatorID string, now time.Time, ttl time.Duration) (string, store.MFATempCode, error) {
	if err := ValidUser(user); err != nil {
		return "", store.MFATempCode{}, err
	}
	if ttl < MinTempCodeTTL || ttl > MaxTempCodeTTL {
		return "", store.MFATempCode{}, fmt.Errorf("expiry %v: must be between %v and %v", ttl, MinTempCodeTTL, MaxTempCodeTTL)
	}
	code, err := mfabundle.NewTempCode()
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", store.MFATempCode{}, err
	}
	// argon2id with a salt of its own (mfabundle.HashCodeKDF); Salt is
	// kept for the record's shape (a verifier needs it only for old hex
	// hashes).
	h, err := mfabundle.HashCodeKDF(code)
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	return code, store.MFATempCode{ID: mfabundle.CodeID(h), User: user, Salt: salt, Hash: h, CreatedAt: now,
		CreatedBy: operatorID, ExpiresAt: now.Add(ttl)}, nil
}
