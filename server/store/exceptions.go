package store

import (
	"context"
	"time"
)

// Exception is an approved exception (例外措置): one USB device allowed
// on one terminal (DeviceID) or on every terminal of a group (Group), for
// one user when User is set, until ExpiresAt or until revoked.
type Exception struct {
	ID                      string
	Vendor, Product, Serial string
	User                    string
	// Exactly one of DeviceID and Group is set.
	DeviceID  string
	Group     string
	Reason    string
	CreatedBy string // operator ID
	CreatedAt time.Time
	ExpiresAt time.Time
	// RevokedAt is zero unless an officer ended it early.
	RevokedAt    time.Time
	RevokedBy    string
	RevokeReason string
}

// ActiveAt reports whether the exception is in force at t.
func (e Exception) ActiveAt(t time.Time) bool { return e.RevokedAt.IsZero() && t.Before(e.ExpiresAt) }

// ExceptionFilter selects exceptions. With DeviceID and/or Group set, an
// exception matches when it names that device or that group.
type ExceptionFilter struct {
	DeviceID string
	Group    string
	// ActiveAt, when set, keeps only exceptions not revoked and expiring
	// after it.
	ActiveAt time.Time
	Limit    int
}

// LedgerEntry is one terminal of the asset ledger (端末台帳).
type LedgerEntry struct {
	AssetID  string
	Hostname string
	Serial   string
	Group    string
	Location string
	Note     string
}

// LedgerImport is the whole ledger as last imported.
type LedgerImport struct {
	Entries    []LedgerEntry // ordered by asset ID
	ImportedBy string        // operator ID
	ImportedAt time.Time     // zero before the first import
}

// Exceptions keeps exceptions and the asset ledger (migration 0007).
type Exceptions interface {
	// CreateException stores e; ErrConflict when the ID is taken.
	CreateException(ctx context.Context, e Exception) error
	// ListExceptions returns matching exceptions, newest first.
	ListExceptions(ctx context.Context, f ExceptionFilter) ([]Exception, error)
	// RevokeException ends an exception: ErrNotFound for an unknown ID,
	// ErrConflict when it was already revoked.
	RevokeException(ctx context.Context, id, by, reason string, at time.Time) (Exception, error)
	// DeviceGroup is the group of one device (ErrNotFound if unknown),
	// for computing its effective policy without reading the device row.
	DeviceGroup(ctx context.Context, deviceID string) (string, error)

	// ReplaceLedger replaces the whole ledger in one transaction.
	ReplaceLedger(ctx context.Context, l LedgerImport) error
	// Ledger returns the ledger; empty before the first import.
	Ledger(ctx context.Context) (LedgerImport, error)
}
