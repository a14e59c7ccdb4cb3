package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

const exceptionCols = `id, vendor, product, serial, username, device_id, device_group, reason, created_by,
	created_at, expires_at, revoked_at, revoked_by, revoke_reason`

type rowScanner interface{ Scan(dest ...any) error }

func scanException(r rowScanner) (store.Exception, error) {
	var (
		e                store.Exception
		created, expires int64
		revoked          sql.NullInt64
	)
	err := r.Scan(&e.ID, &e.Vendor, &e.Product, &e.Serial, &e.User, &e.DeviceID, &e.Group, &e.Reason, &e.CreatedBy,
		&created, &expires, &revoked, &e.RevokedBy, &e.RevokeReason)
	e.CreatedAt, e.ExpiresAt = codec.FromMicros(created, true), codec.FromMicros(expires, true)
	e.RevokedAt = codec.FromMicros(revoked.Int64, revoked.Valid)
	return e, err
}

// CreateException stores an approved exception.
func (s *Store) CreateException(ctx context.Context, e store.Exception) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO exceptions (`+exceptionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.Vendor, e.Product, e.Serial, e.User, e.DeviceID, e.Group, e.Reason, e.CreatedBy,
			codec.Time(e.CreatedAt).UnixMicro(), codec.Time(e.ExpiresAt).UnixMicro(), codec.Micros(codec.Time(e.RevokedAt)),
			e.RevokedBy, e.RevokeReason)
		if isUnique(err) {
			return fmt.Errorf("create exception %s: %w", e.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create exception %s: %w", e.ID, err)
		}
		return nil
	})
}

// ListExceptions returns matching exceptions, newest first.
func (s *Store) ListExceptions(ctx context.Context, f store.ExceptionFilter) ([]store.Exception, error) {
	var where []string
	var args []any
	switch {
	case f.DeviceID != "" && f.Group != "":
		where, args = append(where, "(device_id = ? OR device_group = ?)"), append(args, f.DeviceID, f.Group)
	case f.DeviceID != "":
		where, args = append(where, "device_id = ?"), append(args, f.DeviceID)
	case f.Group != "":
		where, args = append(where, "device_group = ?"), append(args, f.Group)
	}
	if !f.ActiveAt.IsZero() {
		where, args = append(where, "revoked_at IS NULL AND expires_at > ?"), append(args, codec.Time(f.ActiveAt).UnixMicro())
	}
	q := "SELECT " + exceptionCols + " FROM exceptions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list exceptions: %w", err)
	}
	defer rows.Close()
	var out []store.Exception
	for rows.Next() {
		e, err := scanException(rows)
		if err != nil {
			return nil, fmt.Errorf("list exceptions: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list exceptions: %w", err)
	}
	return out, nil
}

// RevokeException ends an exception before its expiry.
func (s *Store) RevokeException(ctx context.Context, id, by, reason string, at time.Time) (store.Exception, error) {
	var e store.Exception
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		e, err = scanException(tx.QueryRowContext(ctx, "SELECT "+exceptionCols+" FROM exceptions WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("exception %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		if !e.RevokedAt.IsZero() {
			return fmt.Errorf("exception %s is already revoked: %w", id, store.ErrConflict)
		}
		e.RevokedAt, e.RevokedBy, e.RevokeReason = codec.Time(at), by, reason
		if _, err := tx.ExecContext(ctx, "UPDATE exceptions SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
			e.RevokedAt.UnixMicro(), by, reason, id); err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		return nil
	})
	return e, err
}

// DeviceGroup is the group of one device.
func (s *Store) DeviceGroup(ctx context.Context, deviceID string) (string, error) {
	var g string
	err := s.r.QueryRowContext(ctx, "SELECT device_group FROM devices WHERE id = ?", deviceID).Scan(&g)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("group of device %s: %w", deviceID, err)
	}
	return g, nil
}

// ReplaceLedger replaces the whole ledger in one transaction.
func (s *Store) ReplaceLedger(ctx context.Context, l store.LedgerImport) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM ledger"); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		stmt, err := tx.PrepareContext(ctx, "INSERT INTO ledger (asset_id, hostname, serial, device_group, location, note) VALUES (?, ?, ?, ?, ?, ?)")
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		defer stmt.Close()
		for _, e := range l.Entries {
			_, err := stmt.ExecContext(ctx, e.AssetID, e.Hostname, e.Serial, e.Group, e.Location, e.Note)
			if isUnique(err) {
				return fmt.Errorf("replace ledger: asset %s twice: %w", e.AssetID, store.ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("replace ledger: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ledger_import (id, imported_by, imported_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET imported_by = excluded.imported_by, imported_at = excluded.imported_at`,
			l.ImportedBy, codec.Time(l.ImportedAt).UnixMicro())
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		return nil
	})
}

// Ledger returns the ledger, ordered by asset ID.
func (s *Store) Ledger(ctx context.Context) (store.LedgerImport, error) {
	var l store.LedgerImport
	var at int64
	err := s.r.QueryRowContext(ctx, "SELECT imported_by, imported_at FROM ledger_import WHERE id = 1").Scan(&l.ImportedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("ledger: %w", err)
	}
	l.ImportedAt = codec.FromMicros(at, true)
	rows, err := s.r.QueryContext(ctx, "SELECT asset_id, hostname, serial, device_group, location, note FROM ledger ORDER BY asset_id")
	if err != nil {
		return l, fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.LedgerEntry
		if err := rows.Scan(&e.AssetID, &e.Hostname, &e.Serial, &e.Group, &e.Location, &e.Note); err != nil {
			return l, fmt.Errorf("ledger: %w", err)
		}
		l.Entries = append(l.Entries, e)
	}
	return l, rows.Err()
}
