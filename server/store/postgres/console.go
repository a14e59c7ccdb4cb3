package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// SetOperatorLogin creates or replaces an operator's console credential.
func (s *Store) SetOperatorLogin(ctx context.Context, l store.OperatorLogin) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM operators WHERE id = $1", l.OperatorID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("set operator login: operator %s: %w", l.OperatorID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("set operator login: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO operator_logins
			(operator_id, login, password_hash, totp_secret, failures, locked_until, last_totp_step, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (operator_id) DO UPDATE SET login = excluded.login, password_hash = excluded.password_hash,
				totp_secret = excluded.totp_secret, failures = excluded.failures, locked_until = excluded.locked_until,
				last_totp_step = excluded.last_totp_step, updated_at = excluded.updated_at`,
			l.OperatorID, l.Login, l.PasswordHash, l.TOTPSecret, l.Failures, tz(l.LockedUntil), l.LastTOTPStep, codec.Time(l.UpdatedAt))
		if isUnique(err) {
			return fmt.Errorf("set operator login %q: %w", l.Login, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("set operator login: %w", err)
		}
		return nil
	})
}

const loginCols = `l.operator_id, l.login, l.password_hash, l.totp_secret, l.failures, l.locked_until, l.last_totp_step, l.updated_at,
	o.id, o.name, o.role, o.token_hash, o.created_at, o.disabled_at`

func (s *Store) operatorLogin(ctx context.Context, q querier, where string, arg any) (store.OperatorLogin, store.Operator, error) {
	var (
		l                store.OperatorLogin
		o                store.Operator
		locked, disabled *time.Time
		updated, created time.Time
	)
	err := q.QueryRow(ctx, "SELECT "+loginCols+" FROM operator_logins l JOIN operators o ON o.id = l.operator_id WHERE "+where, arg).Scan(
		&l.OperatorID, &l.Login, &l.PasswordHash, &l.TOTPSecret, &l.Failures, &locked, &l.LastTOTPStep, &updated,
		&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, o, fmt.Errorf("operator login: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, o, fmt.Errorf("operator login: %w", err)
	}
	l.LockedUntil, l.UpdatedAt = ts(locked), codec.Time(updated)
	o.CreatedAt, o.DisabledAt = codec.Time(created), ts(disabled)
	return l, o, nil
}

// OperatorLogin finds a console credential by login name.
func (s *Store) OperatorLogin(ctx context.Context, login string) (store.OperatorLogin, store.Operator, error) {
	return s.operatorLogin(ctx, s.pool, "l.login = $1", login)
}

// GetOperator returns one operator by ID.
func (s *Store) GetOperator(ctx context.Context, id string) (store.Operator, error) {
	var (
		o        store.Operator
		created  time.Time
		disabled *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, token_hash, created_at, disabled_at
		FROM operators WHERE id = $1`, id).Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("operator %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get operator: %w", err)
	}
	o.CreatedAt, o.DisabledAt = codec.Time(created), ts(disabled)
	return o, nil
}

// LoginFailed counts a failure and locks the login at maxFailures. The
// row lock (FOR UPDATE) makes concurrent failures count one by one.
func (s *Store) LoginFailed(ctx context.Context, operatorID string, at time.Time, maxFailures int, lockFor time.Duration) (store.OperatorLogin, error) {
	var out store.OperatorLogin
	err := s.write(ctx, func(tx pgx.Tx) error {
		l, _, err := s.operatorLogin(ctx, tx, "l.operator_id = $1 FOR UPDATE OF l", operatorID)
		if err != nil {
			return err
		}
		l.Failures++
		if l.Failures >= maxFailures {
			l.Failures, l.LockedUntil = 0, codec.Time(at.Add(lockFor))
		}
		if _, err := tx.Exec(ctx, "UPDATE operator_logins SET failures = $1, locked_until = $2 WHERE operator_id = $3",
			l.Failures, tz(l.LockedUntil), operatorID); err != nil {
			return fmt.Errorf("login failed: %w", err)
		}
		out = l
		return nil
	})
	return out, err
}

// LoginSucceeded resets the failure count and records the TOTP step.
func (s *Store) LoginSucceeded(ctx context.Context, operatorID string, step int64, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE operator_logins SET failures = 0, locked_until = NULL, last_totp_step = $1
		WHERE operator_id = $2 AND last_totp_step < $1`, step, operatorID)
	if err != nil {
		return fmt.Errorf("login succeeded: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("login of %s: TOTP step %d already used or unknown login: %w", operatorID, step, store.ErrConflict)
	}
	return nil
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, cs store.ConsoleSession) error {
	// In a transaction of its own so that the audited sign-in commits its
	// record with the session.
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO console_sessions (id_hash, operator_id, created_at, last_seen) VALUES ($1, $2, $3, $4)",
			cs.IDHash, cs.OperatorID, codec.Time(cs.CreatedAt), codec.Time(cs.LastSeen))
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("create session: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session returns a session and its operator.
func (s *Store) Session(ctx context.Context, idHash []byte) (store.ConsoleSession, store.Operator, error) {
	var (
		cs                       store.ConsoleSession
		o                        store.Operator
		created, seen, opCreated time.Time
		disabled                 *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT s.id_hash, s.operator_id, s.created_at, s.last_seen,
		o.id, o.name, o.role, o.token_hash, o.created_at, o.disabled_at
		FROM console_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = $1`, idHash).Scan(
		&cs.IDHash, &cs.OperatorID, &created, &seen, &o.ID, &o.Name, &o.Role, &o.TokenHash, &opCreated, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return cs, o, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return cs, o, fmt.Errorf("session: %w", err)
	}
	cs.CreatedAt, cs.LastSeen = codec.Time(created), codec.Time(seen)
	o.CreatedAt, o.DisabledAt = codec.Time(opCreated), ts(disabled)
	return cs, o, nil
}

// TouchSession records activity on a session.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	tag, err := s.pool.Exec(ctx, "UPDATE console_sessions SET last_seen = $1 WHERE id_hash = $2", codec.Time(at), idHash)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touch session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session; deleting an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM console_sessions WHERE id_hash = $1", idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// SearchDevices finds devices by hostname prefix on the hostname index
// (collation "C", so the range is byte-wise as in SQLite).
func (s *Store) SearchDevices(ctx context.Context, prefix string, limit int) ([]store.Device, error) {
	ds, err := queryDevices(ctx, s.pool, "SELECT "+deviceCols+` FROM devices
		WHERE hostname >= $1 AND hostname < $2 AND hostname <> '' ORDER BY hostname, id LIMIT $3`,
		prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	return ds, nil
}
