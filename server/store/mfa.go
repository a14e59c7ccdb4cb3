package store

import (
	"context"
	"time"
)

// MFAUser is one login user's second factors as the server keeps them
// for terminal login MFA. The TOTP seed is sealed by server/mfa under the server's MFA
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
	// Method is MFAMethodTOTP or MFAMethodTOTPHardware ("" stores as
	// MFAMethodTOTP).
	Method string
	// TokenSerial is the hardware token's serial; empty for an app.
	TokenSerial string
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
	MFALifecycle
	MFALogins
}

// Methods of MFAUser.Method.
const (
	MFAMethodTOTP         = "totp"          // an authenticator app (EnrollMFAUser)
	MFAMethodTOTPHardware = "totp-hardware" // an imported hardware token seed
)

// MFATempCode is a one-time temporary code a helpdesk issued, kept as a
// salted hash.
type MFATempCode struct {
	// ID is mfabundle.CodeID(Hash): what a terminal reports on use.
	ID        string
	User      string
	Salt      []byte
	Hash      string
	CreatedAt time.Time
	CreatedBy string
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
	// DeviceID binds the code to one terminal ("" = every terminal that
	// receives it); a privileged user's code is always bound.
	DeviceID string
}

// MFAUnlock is one user's unlock counter on one device ("" = every
// device). Counters only grow.
type MFAUnlock struct {
	User       string
	DeviceID   string
	Generation int64
}

// MFALifecycle is what helpdesk and officer actions need beyond
// enrolment: removal, import, temporary codes, unlocks and consumed
// codes. Every change bumps the MFA generation, so every
// terminal gets a new bundle at its next report.
type MFALifecycle interface {
	// DeleteMFAUser deletes the user's factors: the enrolment and any
	// temporary codes, and the user's replay and lock-out state (a new
	// enrolment is a new secret). Unlock counters stay. ErrNotFound when there was
	// nothing to delete.
	DeleteMFAUser(ctx context.Context, user string) (int64, error)
	// ImportMFAUsers stores every user in one transaction and one new
	// generation, or none: an enrolled user without replace, or a token
	// serial held by another user, is ErrConflict naming the user.
	ImportMFAUsers(ctx context.Context, us []MFAUser, replace bool) (int64, error)
	// PutMFATempCode stores a new temporary code.
	PutMFATempCode(ctx context.Context, c MFATempCode) (int64, error)
	// MFATempCodes returns the unused codes that expire after now, by user
	// then expiry.
	MFATempCodes(ctx context.Context, now time.Time) ([]MFATempCode, error)
	// UnlockMFAUser raises the user's counter on deviceID ("" for every
	// device) by one and returns the generation and the new counter. It
	// clears the user's failures and lock-outs the devices reported (on
	// every device: a fleet-wide lock-out would otherwise hold); the last
	// accepted steps stay.
	UnlockMFAUser(ctx context.Context, user, deviceID string) (gen, counter int64, err error)
	// MFAUnlocks returns every counter, by user then device.
	MFAUnlocks(ctx context.Context) ([]MFAUnlock, error)
	// ConsumeMFACodes marks the user's recovery and temporary codes whose
	// mfabundle.CodeID is in ids as used (recovery hashes are removed) and
	// returns how many it found; the generation moves only when it found
	// one, so a re-sent event costs nothing.
	ConsumeMFACodes(ctx context.Context, user string, ids []string, at time.Time) (int, error)
}

// MFALoginState is one user's replay and lock-out state on one device,
// as its reports told the server (issue #14 item 9).
type MFALoginState struct {
	User     string
	DeviceID string
	// LastStep is the last TOTP step the device accepted for the user.
	LastStep int64
	// Failures is the device's current run of failures (reset by a
	// success anywhere, by a lock-out there, and by an unlock).
	Failures int
	// LockedUntil is the device's lock-out of the user; zero for none.
	LockedUntil time.Time
	UpdatedAt   time.Time
}

// MFALoginKind is what one login event says (MFALoginEvent.Kind).
type MFALoginKind int

// What a terminal's login events say, in order.
const (
	// MFALoginSuccess: the user logged in (Step: the TOTP step, 0 for
	// another method). Clears the user's failures and lock-outs on every
	// device.
	MFALoginSuccess MFALoginKind = iota + 1
	// MFALoginFailure: Failures is the device's run of failures now.
	MFALoginFailure
	// MFALoginLockout: the device locked the user out until Until.
	MFALoginLockout
)

// MFALoginEvent is one login event of a report, already checked.
type MFALoginEvent struct {
	Kind     MFALoginKind
	User     string
	Step     int64
	Failures int
	Until    time.Time
}

// MFALogins keeps the fleet-wide replay and lock-out state.
type MFALogins interface {
	// RecordMFALogins applies a device's login events in order and, when
	// anything changed, bumps the MFA generation (every terminal's next
	// bundle carries the new state). It reports whether anything changed.
	RecordMFALogins(ctx context.Context, deviceID string, evs []MFALoginEvent, at time.Time) (bool, error)
	// MFALoginStates returns every row, by user then device.
	MFALoginStates(ctx context.Context) ([]MFALoginState, error)
}
