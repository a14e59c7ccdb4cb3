// Package mfatest makes MFA bundles for tests the way the server does
// (server/mfa), without importing the server.
package mfatest

import (
	"crypto/rand"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// User is an enrolled user with what only the user knows.
type User struct {
	Name          string
	Secret        totp.Secret
	RecoveryCodes []string
	Record        *mamoriv1.MFAUserSecret
}

// NewUser makes a user with a fresh secret and three recovery codes,
// hashed as the server hashes them now (argon2id, a salt per code).
func NewUser(t testing.TB, name string) User {
	t.Helper()
	return NewUserN(t, name, 3, true)
}

// NewLegacyUser is NewUser with the recovery codes hashed as servers
// before issue 14 item 8 did (SHA-256 under one salt per user).
func NewLegacyUser(t testing.TB, name string) User {
	t.Helper()
	return NewUserN(t, name, 3, false)
}

// NewUserN makes a user with n recovery codes, hashed with the KDF or
// the legacy way.
func NewUserN(t testing.TB, name string, n int, kdf bool) User {
	t.Helper()
	s, err := totp.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	codes, err := mfabundle.NewRecoveryCodes(n)
	if err != nil {
		t.Fatal(err)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	var hashes []string
	for _, c := range codes {
		h := mfabundle.HashRecoveryCode(salt, c)
		if kdf {
			if h, err = mfabundle.HashCodeKDF(c); err != nil {
				t.Fatal(err)
			}
		}
		hashes = append(hashes, h)
	}
	return User{Name: name, Secret: s, RecoveryCodes: codes, Record: &mamoriv1.MFAUserSecret{
		User: name, TotpSecret: s, Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30,
		RecoveryCodeHashes: hashes, RecoverySalt: salt}}
}

// Code is the user's TOTP code at t.
func (u User) Code(t time.Time) string {
	c, _ := totp.Default().Code(u.Secret, t)
	return c
}

// Seal makes the sealed bundle the server would send to deviceID.
func Seal(t testing.TB, pub []byte, deviceID, version string, users ...User) *mamoriv1.SealedMFABundle {
	t.Helper()
	b := &mamoriv1.MFABundle{Version: version, DeviceId: deviceID}
	for _, u := range users {
		b.Users = append(b.Users, u.Record)
	}
	sealed, err := mfabundle.Seal(pub, deviceID, b)
	if err != nil {
		t.Fatal(err)
	}
	return &mamoriv1.SealedMFABundle{Version: version, Sealed: sealed}
}

// SealBundle seals a whole bundle (temp codes, unlocks, grace) for
// deviceID; b.DeviceId is set.
func SealBundle(t testing.TB, pub []byte, deviceID string, b *mamoriv1.MFABundle) *mamoriv1.SealedMFABundle {
	t.Helper()
	b.DeviceId = deviceID
	sealed, err := mfabundle.Seal(pub, deviceID, b)
	if err != nil {
		t.Fatal(err)
	}
	return &mamoriv1.SealedMFABundle{Version: b.Version, Sealed: sealed}
}

// TempCode makes a temporary code for user expiring at exp, as the server
// does (argon2id): the code and its bundle entry.
func TempCode(t testing.TB, user string, exp time.Time) (string, *mamoriv1.MFATempCode) {
	t.Helper()
	return tempCode(t, user, exp, true)
}

// LegacyTempCode is TempCode hashed as servers before issue 14 item 8 did.
func LegacyTempCode(t testing.TB, user string, exp time.Time) (string, *mamoriv1.MFATempCode) {
	t.Helper()
	return tempCode(t, user, exp, false)
}

func tempCode(t testing.TB, user string, exp time.Time, kdf bool) (string, *mamoriv1.MFATempCode) {
	t.Helper()
	code, err := mfabundle.NewTempCode()
	if err != nil {
		t.Fatal(err)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	h := mfabundle.HashRecoveryCode(salt, code)
	if kdf {
		if h, err = mfabundle.HashCodeKDF(code); err != nil {
			t.Fatal(err)
		}
	}
	return code, &mamoriv1.MFATempCode{User: user, Id: mfabundle.CodeID(h), Salt: salt, Hash: h, ExpiresAt: timestamppb.New(exp)}
}
