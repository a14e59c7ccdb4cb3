package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// CreateOperator stores an operator; a taken ID or token hash is ErrConflict.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	err := s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, `INSERT INTO operators (id, name, role, token_hash, created_at, disabled_at, token_expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, o.ID, o.Name, o.Role, o.TokenHash, s.d.Stamp(o.CreatedAt), s.d.Native(o.DisabledAt), s.d.Native(o.TokenExpiresAt))
		return err
	})
	if s.d.IsUnique(err) {
		return fmt.Errorf("create operator %s: %w", o.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create operator %s: %w", o.ID, err)
	}
	return nil
}

// operatorCols are the columns scanOperator reads.
const operatorCols = "id, name, role, token_hash, created_at, disabled_at, token_expires_at"

func scanOperator(r interface{ Scan(dest ...any) error }) (store.Operator, error) {
	var (
		o                          store.Operator
		created, disabled, expires Time
	)
	err := r.Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled, &expires)
	o.CreatedAt, o.DisabledAt, o.TokenExpiresAt = created.T, disabled.T, expires.T
	return o, err
}

// ExpireLegacyTokens gives every token without an expiry (issued before
// tokens expired) the expiry at, and returns their operators' IDs.
func (s *Store) ExpireLegacyTokens(ctx context.Context, at time.Time) ([]string, error) {
	var ids []string
	err := s.write(ctx, func(q Q) error {
		ids = nil
		rows, err := q.Query(ctx, "SELECT id FROM operators WHERE token_expires_at IS NULL ORDER BY id")
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = q.Exec(ctx, "UPDATE operators SET token_expires_at = ? WHERE token_expires_at IS NULL", s.d.Native(at))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire legacy operator tokens: %w", err)
	}
	return ids, nil
}

// OperatorByTokenHash finds the operator whose API token hashes to hash.
// A disabled operator is returned too; the caller checks DisabledAt.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash []byte) (store.Operator, error) {
	var o store.Operator
	err := s.read(ctx, func(q Q) error {
		var err error
		o, err = scanOperator(queryRow(ctx, q, "SELECT "+operatorCols+" FROM operators WHERE token_hash = ?", hash))
		return err
	})
	if errors.Is(err, errNoRows) {
		return store.Operator{}, fmt.Errorf("operator: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("operator by token: %w", err)
	}
	return o, nil
}

// CountOperators counts operators.
func (s *Store) CountOperators(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, func(q Q) error { return queryRow(ctx, q, "SELECT count(*) FROM operators").Scan(&n) })
	if err != nil {
		return 0, fmt.Errorf("count operators: %w", err)
	}
	return n, nil
}

// GetOperator returns one operator by ID.
func (s *Store) GetOperator(ctx context.Context, id string) (store.Operator, error) {
	var o store.Operator
	err := s.read(ctx, func(q Q) error {
		var err error
		o, err = scanOperator(queryRow(ctx, q, "SELECT "+operatorCols+" FROM operators WHERE id = ?", id))
		return err
	})
	if errors.Is(err, errNoRows) {
		return store.Operator{}, fmt.Errorf("operator %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("get operator: %w", err)
	}
	return o, nil
}

// ListOperators lists operators with their console logins.
func (s *Store) ListOperators(ctx context.Context) ([]store.OperatorAccount, error) {
	out, err := list(ctx, s, func(r Rows) (store.OperatorAccount, error) {
		var (
			a                         store.OperatorAccount
			created, disabled, locked Time
			login                     sql.NullString
			failures                  sql.NullInt64
		)
		err := r.Scan(&a.ID, &a.Name, &a.Role, &created, &disabled, &login, &failures, &locked)
		a.CreatedAt, a.DisabledAt, a.LockedUntil = created.T, disabled.T, locked.T
		a.Login, a.Failures = login.String, int(failures.Int64)
		return a, err
	}, `SELECT o.id, o.name, o.role, o.created_at, o.disabled_at, l.login, l.failures, l.locked_until
		FROM operators o LEFT JOIN operator_logins l ON l.operator_id = o.id ORDER BY o.name, o.id`)
	if err != nil {
		return nil, fmt.Errorf("list operators: %w", err)
	}
	return out, nil
}

// DisableOperator disables an operator and ends its sessions.
func (s *Store) DisableOperator(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(q Q) error {
		n, err := q.Exec(ctx, `UPDATE operators SET disabled_at = coalesce(disabled_at, ?) WHERE id = ?`, s.d.Native(at), id)
		if err != nil {
			return fmt.Errorf("disable operator %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("operator %s: %w", id, store.ErrNotFound)
		}
		if _, err := q.Exec(ctx, `DELETE FROM console_sessions WHERE operator_id = ?`, id); err != nil {
			return fmt.Errorf("disable operator %s: end sessions: %w", id, err)
		}
		return nil
	})
}

// EndSessions deletes every console session of an operator.
func (s *Store) EndSessions(ctx context.Context, operatorID string) error {
	return s.write(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, `DELETE FROM console_sessions WHERE operator_id = ?`, operatorID); err != nil {
			return fmt.Errorf("end sessions of operator %s: %w", operatorID, err)
		}
		return nil
	})
}

// ResetLockout clears a login's failures and lock.
func (s *Store) ResetLockout(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(q Q) error {
		n, err := q.Exec(ctx, `UPDATE operator_logins SET failures = 0, locked_until = NULL, updated_at = ? WHERE operator_id = ?`, s.d.Native(at), id)
		if err != nil {
			return fmt.Errorf("reset lock-out of %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("console login of operator %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}
