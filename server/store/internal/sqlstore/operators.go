package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// CreateOperator stores an operator and, when o.Token is set, its first
// API token, in one transaction; a taken ID or token hash is ErrConflict.
// An empty TokenHash (the legacy column, which no longer authenticates)
// stores a random one.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	legacy := o.TokenHash
	if len(legacy) == 0 {
		legacy = make([]byte, 32)
		rand.Read(legacy)
	}
	err := s.write(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, `INSERT INTO operators (id, name, role, token_hash, created_at, disabled_at, token_expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, o.ID, o.Name, o.Role, legacy, s.d.Stamp(o.CreatedAt), s.d.Native(o.DisabledAt), s.d.Native(o.TokenExpiresAt)); err != nil {
			return err
		}
		if o.Token != nil {
			t := *o.Token
			t.OperatorID = o.ID
			return s.insertOperatorToken(ctx, q, t)
		}
		return nil
	})
	if s.d.IsUnique(err) {
		return fmt.Errorf("create operator %s: %w", o.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create operator %s: %w", o.ID, err)
	}
	return nil
}

func (s *Store) insertOperatorToken(ctx context.Context, q Q, t store.OperatorToken) error {
	single := 0
	if t.SingleUse {
		single = 1
	}
	_, err := q.Exec(ctx, `INSERT INTO operator_tokens (id, operator_id, name, token_hash, created_by, created_at, expires_at, revoked_at, revoked_by, last_used_at, single_use)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, t.OperatorID, t.Name, t.Hash, t.CreatedBy, s.d.Stamp(t.CreatedAt),
		s.d.Native(t.ExpiresAt), s.d.Native(t.RevokedAt), t.RevokedBy, s.d.Native(t.LastUsedAt), single)
	return err
}

// CreateOperatorToken stores a named API token of an existing operator.
func (s *Store) CreateOperatorToken(ctx context.Context, t store.OperatorToken) error {
	err := s.write(ctx, func(q Q) error {
		var n int
		if err := queryRow(ctx, q, "SELECT count(*) FROM operators WHERE id = ?", t.OperatorID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("operator %s: %w", t.OperatorID, store.ErrNotFound)
		}
		return s.insertOperatorToken(ctx, q, t)
	})
	if s.d.IsUnique(err) {
		return fmt.Errorf("create operator token %s: %w", t.Name, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create operator token %s: %w", t.Name, err)
	}
	return nil
}

// operatorTokenCols are the columns scanOperatorToken reads (table t).
const operatorTokenCols = "t.id, t.operator_id, t.name, t.token_hash, t.created_by, t.created_at, t.expires_at, t.revoked_at, t.revoked_by, t.last_used_at, t.single_use"

func scanOperatorToken(dest []any) (*store.OperatorToken, func()) {
	var (
		t                                  store.OperatorToken
		created, expires, revoked, lastUse Time
		single                             int64
	)
	copy(dest, []any{&t.ID, &t.OperatorID, &t.Name, &t.Hash, &t.CreatedBy, &created, &expires, &revoked, &t.RevokedBy, &lastUse, &single})
	return &t, func() {
		t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastUsedAt = created.T, expires.T, revoked.T, lastUse.T
		t.SingleUse = single != 0
	}
}

// ListOperatorTokens lists tokens, never their hashes.
func (s *Store) ListOperatorTokens(ctx context.Context, operatorID string) ([]store.OperatorTokenInfo, error) {
	where, args := "", []any{}
	if operatorID != "" {
		where, args = " WHERE t.operator_id = ?", append(args, operatorID)
	}
	out, err := list(ctx, s, func(r Rows) (store.OperatorTokenInfo, error) {
		dest := make([]any, 12)
		t, done := scanOperatorToken(dest)
		var name string
		dest[11] = &name
		err := r.Scan(dest...)
		done()
		t.Hash = nil
		return store.OperatorTokenInfo{OperatorToken: *t, OperatorName: name}, err
	}, "SELECT "+operatorTokenCols+", o.name FROM operator_tokens t JOIN operators o ON o.id = t.operator_id"+where+
		" ORDER BY o.name, t.operator_id, t.name, t.created_at", args...)
	if err != nil {
		return nil, fmt.Errorf("list operator tokens: %w", err)
	}
	return out, nil
}

// RevokeOperatorToken revokes the live token called name of operatorID.
func (s *Store) RevokeOperatorToken(ctx context.Context, operatorID, name, by string, at time.Time) (store.OperatorToken, error) {
	var out store.OperatorToken
	err := s.write(ctx, func(q Q) error {
		dest := make([]any, 11)
		t, done := scanOperatorToken(dest)
		err := queryRow(ctx, q, "SELECT "+operatorTokenCols+" FROM operator_tokens t WHERE t.operator_id = ? AND t.name = ? AND t.revoked_at IS NULL", operatorID, name).Scan(dest...)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("operator token %s: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		done()
		if _, err := q.Exec(ctx, "UPDATE operator_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?", s.d.Stamp(at), by, t.ID); err != nil {
			return err
		}
		t.RevokedAt, t.RevokedBy, t.Hash = at, by, nil
		out = *t
		return nil
	})
	if err != nil {
		return store.OperatorToken{}, fmt.Errorf("revoke operator token: %w", err)
	}
	return out, nil
}

// usedEvery is how often a token's last use is written: an admin call
// does not cost a write each.
const usedEvery = time.Minute

// UseOperatorToken records a use; a single-use token ends with it.
func (s *Store) UseOperatorToken(ctx context.Context, id string, at time.Time) error {
	err := s.write(ctx, func(q Q) error {
		n, err := q.Exec(ctx, "UPDATE operator_tokens SET revoked_at = ?, revoked_by = ?, last_used_at = ? WHERE id = ? AND single_use = 1 AND revoked_at IS NULL",
			s.d.Stamp(at), "first use", s.d.Stamp(at), id)
		if err != nil || n == 1 {
			return err
		}
		var single int64
		var revoked Time
		err = queryRow(ctx, q, "SELECT single_use, revoked_at FROM operator_tokens WHERE id = ?", id).Scan(&single, &revoked)
		if errors.Is(err, errNoRows) || (err == nil && (single != 0 || !revoked.T.IsZero())) {
			return fmt.Errorf("operator token %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = q.Exec(ctx, "UPDATE operator_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
			s.d.Stamp(at), id, s.d.Stamp(at.Add(-usedEvery)))
		return err
	})
	if err != nil {
		return fmt.Errorf("use operator token: %w", err)
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
// tokens expired) that is not revoked the expiry at, and returns their
// operators' IDs.
func (s *Store) ExpireLegacyTokens(ctx context.Context, at time.Time) ([]string, error) {
	var ids []string
	err := s.write(ctx, func(q Q) error {
		ids = nil
		rows, err := q.Query(ctx, "SELECT operator_id FROM operator_tokens WHERE expires_at IS NULL AND revoked_at IS NULL ORDER BY operator_id, name")
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
		_, err = q.Exec(ctx, "UPDATE operator_tokens SET expires_at = ? WHERE expires_at IS NULL AND revoked_at IS NULL", s.d.Native(at))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire legacy operator tokens: %w", err)
	}
	return ids, nil
}

// OperatorByTokenHash finds the API token that hashes to hash and its
// operator. Disabled operators, revoked and expired tokens are returned
// too; the caller judges.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash []byte) (store.Operator, store.OperatorToken, error) {
	var (
		o store.Operator
		t *store.OperatorToken
	)
	err := s.read(ctx, func(q Q) error {
		dest := make([]any, 11)
		var done func()
		t, done = scanOperatorToken(dest)
		if err := queryRow(ctx, q, "SELECT "+operatorTokenCols+" FROM operator_tokens t WHERE t.token_hash = ?", hash).Scan(dest...); err != nil {
			return err
		}
		done()
		var err error
		o, err = scanOperator(queryRow(ctx, q, "SELECT "+operatorCols+" FROM operators WHERE id = ?", t.OperatorID))
		return err
	})
	if errors.Is(err, errNoRows) {
		return store.Operator{}, store.OperatorToken{}, fmt.Errorf("operator: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, store.OperatorToken{}, fmt.Errorf("operator by token: %w", err)
	}
	return o, *t, nil
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
