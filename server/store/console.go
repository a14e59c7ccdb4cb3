package store

import (
	"context"
	"time"
)

// OperatorLogin is an operator's web-console credential: a login name, a
// slow password hash and a TOTP seed. The API token (Operator.TokenHash)
// is separate and keeps working.
type OperatorLogin struct {
	OperatorID string
	// Login is what the operator types; unique.
	Login string
	// PasswordHash is a PHC-format argon2id string (server/auth).
	PasswordHash string
	// TOTPSecret is the base32 seed. The server must be able to compute
	// codes, so it is stored as is; protect the database like the CA key.
	TOTPSecret string
	// Failures counts sign-in failures since the last success.
	Failures int
	// LockedUntil: no sign-in, right or wrong, before this.
	LockedUntil time.Time
	// LastTOTPStep is the time step of the last accepted code: a code is
	// accepted once only.
	LastTOTPStep int64
	UpdatedAt    time.Time
}

// ConsoleSession is a signed-in browser. Only the SHA-256 of the session ID
// is stored, so a copy of the database signs no one in.
type ConsoleSession struct {
	IDHash     []byte
	OperatorID string
	CreatedAt  time.Time
	LastSeen   time.Time
}

// Console is what the web console needs beyond the other interfaces.
type Console interface {
	// SetOperatorLogin creates or replaces the operator's console
	// credential: ErrNotFound for an unknown operator, ErrConflict when
	// another operator has the login.
	SetOperatorLogin(ctx context.Context, l OperatorLogin) error
	// OperatorLogin finds a credential and its operator by login name.
	OperatorLogin(ctx context.Context, login string) (OperatorLogin, Operator, error)
	// GetOperator returns one operator by ID.
	GetOperator(ctx context.Context, id string) (Operator, error)
	// LoginFailed counts one failed sign-in; when the count reaches
	// maxFailures it locks the login until at+lockFor and restarts the
	// count. It returns the credential as updated.
	LoginFailed(ctx context.Context, operatorID string, at time.Time, maxFailures int, lockFor time.Duration) (OperatorLogin, error)
	// LoginSucceeded resets the failure count and records the TOTP step
	// used; ErrConflict when step is not after the last accepted one (a
	// replayed code).
	LoginSucceeded(ctx context.Context, operatorID string, step int64, at time.Time) error
	CreateSession(ctx context.Context, s ConsoleSession) error
	// Session returns a session and its operator; ErrNotFound if unknown.
	Session(ctx context.Context, idHash []byte) (ConsoleSession, Operator, error)
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	// SearchDevices returns devices whose hostname starts with prefix
	// (byte-wise, case-sensitive), ordered by hostname then ID.
	SearchDevices(ctx context.Context, prefix string, limit int) ([]Device, error)
}

// HostnameUpper is the exclusive upper bound of hostnames that start with
// prefix, for an index range scan.
func HostnameUpper(prefix string) string { return prefix + "\U0010FFFF" }
