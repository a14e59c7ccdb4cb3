package store

import (
	"context"
	"time"
)

// MFAUser is one login user's second factors as the server keeps them
// (issue 4). The TOTP seed is sealed by server/mfa under the server's MFA
// key before it reaches the store; recovery codes are kept only as salted
// hashes.
type MFAUser struct {
	User string
	// SealedSecret is the TOTP seed, AES-256-GCM under the MFA key.
	SealedSecret  []byte
	Algorithm     string
	Digits        int
	PeriodSeconds int
	RecoverySalt  []byte
	// RecoveryHashes are hex SHA-256(salt || code) of the unused codes.
	RecoveryHashes []string
	CreatedAt      time.Time
	CreatedBy      string // operator ID
	// Generation is the MFA generation this record was written in.
	Generation int64
}

// MFA keeps the server-held MFA secrets. Every change bumps one
// fleet-wide generation number, so a report can tell in one read whether a
// terminal's bundle is stale.
type MFA interface {
	// PutMFAUser stores u in a new generation and returns it. An existing
	// user is ErrConflict unless replace is set.
	PutMFAUser(ctx context.Context, u MFAUser, replace bool) (int64, error)
	// MFAUsers returns every enrolled user, ordered by name.
	MFAUsers(ctx context.Context) ([]MFAUser, error)
	// MFAGeneration is the current generation; 0 before the first change.
	MFAGeneration(ctx context.Context) (int64, error)
}
