package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

const exceptionCols = `id, vendor, product, serial, username, device_id, device_group, reason, created_by,
	created_at, expires_at, revoked_at, revoked_by, revoke_reason`

func scanException(r interface{ Scan(dest ...any) error }) (store.Exception, error) {
	var (
		e                         store.Exception
		created, expires, revoked Time
	)
	err := r.Scan(&e.ID, &e.Vendor, &e.Product, &e.Serial, &e.User, &e.DeviceID, &e.Group, &e.Reason, &e.CreatedBy,
		&created, &expires, &revoked, &e.RevokedBy, &e.RevokeReason)
	e.CreatedAt, e.ExpiresAt, e.RevokedAt = created.T, expires.T, revoked.T
	return e, err
}

// CreateException stores an approved exception.
func (s *Store) CreateException(ctx context.Context, e store.Exception) error {
	return s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, `INSERT INTO exceptions (`+exceptionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.Vendor, e.Product, e.Serial, e.User, e.DeviceID, e.Group, e.Reason, e.CreatedBy,
			s.d.Stamp(e.CreatedAt), s.d.Stamp(e.ExpiresAt), s.d.Native(e.RevokedAt), e.RevokedBy, e.RevokeReason)
		if s.d.IsUnique(err) {
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
		where, args = append(where, "revoked_at IS NULL AND expires_at > ?"), append(args, s.d.Stamp(f.ActiveAt))
	}
	sqlText := "SELECT " + exceptionCols + " FROM exceptions"
	if len(where) > 0 {
		sqlText += " WHERE " + strings.Join(where, " AND ")
	}
	sqlText += " ORDER BY created_at DESC, id LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	out, err := list(ctx, s, func(r Rows) (store.Exception, error) { return scanException(r) }, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list exceptions: %w", err)
	}
	return out, nil
}

// RevokeException ends an exception before its expiry.
func (s *Store) RevokeException(ctx context.Context, id, by, reason string, at time.Time) (store.Exception, error) {
	var e store.Exception
	err := s.write(ctx, func(q Q) error {
		var err error
		e, err = scanException(queryRow(ctx, q, "SELECT "+exceptionCols+" FROM exceptions WHERE id = ?"+s.d.ForUpdate(""), id))
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("exception %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		if !e.RevokedAt.IsZero() {
			return fmt.Errorf("exception %s is already revoked: %w", id, store.ErrConflict)
		}
		e.RevokedAt, e.RevokedBy, e.RevokeReason = codec.Time(at), by, reason
		if _, err := q.Exec(ctx, "UPDATE exceptions SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
			s.d.Stamp(e.RevokedAt), by, reason, id); err != nil {
			return fmt.Errorf("revoke exception %s: %w", id, err)
		}
		return nil
	})
	return e, err
}

// ReplaceLedger replaces the whole ledger in one transaction. The rows go
// in the way the backend loads many rows fastest (Dialect.CopyRows).
func (s *Store) ReplaceLedger(ctx context.Context, l store.LedgerImport) error {
	return s.write(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, "DELETE FROM ledger"); err != nil {
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
		if err := s.d.CopyRows(ctx, q, "ledger", []string{"asset_id", "hostname", "serial", "device_group", "location", "note"}, rows); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		_, err := q.Exec(ctx, `INSERT INTO ledger_import (id, imported_by, imported_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET imported_by = excluded.imported_by, imported_at = excluded.imported_at`,
			l.ImportedBy, s.d.Stamp(l.ImportedAt))
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		return nil
	})
}

// Ledger returns the ledger, ordered by asset ID.
func (s *Store) Ledger(ctx context.Context) (store.LedgerImport, error) {
	var l store.LedgerImport
	err := s.read(ctx, func(q Q) error {
		var at Time
		if err := queryRow(ctx, q, "SELECT imported_by, imported_at FROM ledger_import WHERE id = 1").Scan(&l.ImportedBy, &at); err != nil {
			return err
		}
		l.ImportedAt = at.T
		var err error
		l.Entries, err = query(ctx, q, func(r Rows) (store.LedgerEntry, error) {
			var e store.LedgerEntry
			return e, r.Scan(&e.AssetID, &e.Hostname, &e.Serial, &e.Group, &e.Location, &e.Note)
		}, "SELECT asset_id, hostname, serial, device_group, location, note FROM ledger ORDER BY asset_id")
		return err
	})
	if errors.Is(err, errNoRows) {
		return store.LedgerImport{}, nil
	}
	if err != nil {
		return l, fmt.Errorf("ledger: %w", err)
	}
	return l, nil
}
