package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

const exceptionCols = `id, vendor, product, serial, username, device_id, device_group, reason, created_by,
	created_at, expires_at, revoked_at, revoked_by, revoke_reason`

func scanException(r pgx.Row) (store.Exception, error) {
	var (
		e                store.Exception
		created, expires time.Time
		revoked          *time.Time
	)
	err := r.Scan(&e.ID, &e.Vendor, &e.Product, &e.Serial, &e.User, &e.DeviceID, &e.Group, &e.Reason, &e.CreatedBy,
		&created, &expires, &revoked, &e.RevokedBy, &e.RevokeReason)
	e.CreatedAt, e.ExpiresAt, e.RevokedAt = codec.Time(created), codec.Time(expires), ts(revoked)
	return e, err
}

// CreateException stores an approved exception.
func (s *Store) CreateException(ctx context.Context, e store.Exception) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO exceptions (`+exceptionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			e.ID, e.Vendor, e.Product, e.Serial, e.User, e.DeviceID, e.Group, e.Reason, e.CreatedBy,
			codec.Time(e.CreatedAt), codec.Time(e.ExpiresAt), tz(e.RevokedAt), e.RevokedBy, e.RevokeReason)
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
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	switch {
	case f.DeviceID != "" && f.Group != "":
		where = append(where, "(device_id = "+arg(f.DeviceID)+" OR device_group = "+arg(f.Group)+")")
	case f.DeviceID != "":
		where = append(where, "device_id = "+arg(f.DeviceID))
	case f.Group != "":
		where = append(where, "device_group = "+arg(f.Group))
	}
	if !f.ActiveAt.IsZero() {
		where = append(where, "revoked_at IS NULL AND expires_at > "+arg(codec.Time(f.ActiveAt)))
	}
	q := "SELECT " + exceptionCols + " FROM exceptions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id LIMIT " + arg(codec.Limit(f.Limit))
	rows, err := s.pool.Query(ctx, q, args...)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		e, err = scanException(tx.QueryRow(ctx, "SELECT "+exceptionCols+" FROM exceptions WHERE id = $1 FOR UPDATE", id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("exception %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		if !e.RevokedAt.IsZero() {
			return fmt.Errorf("exception %s is already revoked: %w", id, store.ErrConflict)
		}
		e.RevokedAt, e.RevokedBy, e.RevokeReason = codec.Time(at), by, reason
		if _, err := tx.Exec(ctx, "UPDATE exceptions SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 WHERE id = $4",
			e.RevokedAt, by, reason, id); err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		return nil
	})
	return e, err
}

// DeviceGroup is the group of one device.
func (s *Store) DeviceGroup(ctx context.Context, deviceID string) (string, error) {
	var g string
	err := s.pool.QueryRow(ctx, "SELECT device_group FROM devices WHERE id = $1", deviceID).Scan(&g)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("group of device %s: %w", deviceID, err)
	}
	return g, nil
}

// ReplaceLedger replaces the whole ledger in one transaction.
func (s *Store) ReplaceLedger(ctx context.Context, l store.LedgerImport) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM ledger"); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		rows := make([][]any, len(l.Entries))
		seen := make(map[string]bool, len(l.Entries))
		for i, e := range l.Entries {
			if seen[e.AssetID] {
				return fmt.Errorf("replace ledger: asset %s twice: %w", e.AssetID, store.ErrConflict)
			}
			seen[e.AssetID] = true
			rows[i] = []any{e.AssetID, e.Hostname, e.Serial, e.Group, e.Location, e.Note}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger"},
			[]string{"asset_id", "hostname", "serial", "device_group", "location", "note"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO ledger_import (id, imported_by, imported_at) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET imported_by = EXCLUDED.imported_by, imported_at = EXCLUDED.imported_at`,
			l.ImportedBy, codec.Time(l.ImportedAt))
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		return nil
	})
}

// Ledger returns the ledger, ordered by asset ID.
func (s *Store) Ledger(ctx context.Context) (store.LedgerImport, error) {
	var l store.LedgerImport
	var at time.Time
	err := s.pool.QueryRow(ctx, "SELECT imported_by, imported_at FROM ledger_import WHERE id = 1").Scan(&l.ImportedBy, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("ledger: %w", err)
	}
	l.ImportedAt = codec.Time(at)
	rows, err := s.pool.Query(ctx, "SELECT asset_id, hostname, serial, device_group, location, note FROM ledger ORDER BY asset_id")
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
