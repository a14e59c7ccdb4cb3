package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// SetOperatorLogin creates or replaces an operator's console credential.
func (s *Store) SetOperatorLogin(ctx context.Context, l store.OperatorLogin) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM operators WHERE id = ?", l.OperatorID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("set operator login: operator %s: %w", l.OperatorID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("set operator login: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO operator_logins
			(operator_id, login, password_hash, totp_secret, failures, locked_until, last_totp_step, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (operator_id) DO UPDATE SET login = excluded.login, password_hash = excluded.password_hash,
				totp_secret = excluded.totp_secret, failures = excluded.failures, locked_until = excluded.locked_until,
				last_totp_step = excluded.last_totp_step, updated_at = excluded.updated_at`,
			l.OperatorID, l.Login, l.PasswordHash, l.TOTPSecret, l.Failures, codec.Micros(codec.Time(l.LockedUntil)),
			l.LastTOTPStep, codec.Time(l.UpdatedAt).UnixMicro())
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

func scanLogin(sc scanner) (store.OperatorLogin, store.Operator, error) {
	var (
		l                store.OperatorLogin
		o                store.Operator
		locked, disabled sql.NullInt64
		updated, created int64
	)
	err := sc.Scan(&l.OperatorID, &l.Login, &l.PasswordHash, &l.TOTPSecret, &l.Failures, &locked, &l.LastTOTPStep, &updated,
		&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if err != nil {
		return l, o, err
	}
	l.LockedUntil, l.UpdatedAt = ts(locked), codec.FromMicros(updated, true)
	o.CreatedAt, o.DisabledAt = codec.FromMicros(created, true), ts(disabled)
	return l, o, nil
}

// OperatorLogin finds a console credential by login name.
func (s *Store) OperatorLogin(ctx context.Context, login string) (store.OperatorLogin, store.Operator, error) {
	return s.operatorLogin(ctx, s.r, "l.login = ?", login)
}

func (s *Store) operatorLogin(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, where string, arg any) (store.OperatorLogin, store.Operator, error) {
	l, o, err := scanLogin(q.QueryRowContext(ctx, "SELECT "+loginCols+
		" FROM operator_logins l JOIN operators o ON o.id = l.operator_id WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return l, o, fmt.Errorf("operator login: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, o, fmt.Errorf("operator login: %w", err)
	}
	return l, o, nil
}

// GetOperator returns one operator by ID.
func (s *Store) GetOperator(ctx context.Context, id string) (store.Operator, error) {
	var (
		o        store.Operator
		created  int64
		disabled sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, name, role, token_hash, created_at, disabled_at
		FROM operators WHERE id = ?`, id).Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("operator %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get operator: %w", err)
	}
	o.CreatedAt, o.DisabledAt = codec.FromMicros(created, true), ts(disabled)
	return o, nil
}

// LoginFailed counts a failure and locks the login at maxFailures.
func (s *Store) LoginFailed(ctx context.Context, operatorID string, at time.Time, maxFailures int, lockFor time.Duration) (store.OperatorLogin, error) {
	var out store.OperatorLogin
	err := s.write(ctx, func(tx *sql.Tx) error {
		l, _, err := s.operatorLogin(ctx, tx, "l.operator_id = ?", operatorID)
		if err != nil {
			return err
		}
		l.Failures++
		if l.Failures >= maxFailures {
			l.Failures, l.LockedUntil = 0, at.Add(lockFor)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE operator_logins SET failures = ?, locked_until = ? WHERE operator_id = ?",
			l.Failures, codec.Micros(codec.Time(l.LockedUntil)), operatorID); err != nil {
			return fmt.Errorf("login failed: %w", err)
		}
		l.LockedUntil = codec.Time(l.LockedUntil)
		out = l
		return nil
	})
	return out, err
}

// LoginSucceeded resets the failure count and records the TOTP step.
func (s *Store) LoginSucceeded(ctx context.Context, operatorID string, step int64, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE operator_logins SET failures = 0, locked_until = NULL, last_totp_step = ?
			WHERE operator_id = ? AND last_totp_step < ?`, step, operatorID, step)
		if err != nil {
			return fmt.Errorf("login succeeded: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("login of %s: TOTP step %d already used or unknown login: %w", operatorID, step, store.ErrConflict)
		}
		return nil
	})
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, cs store.ConsoleSession) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO console_sessions (id_hash, operator_id, created_at, last_seen) VALUES (?, ?, ?, ?)",
			cs.IDHash, cs.OperatorID, codec.Time(cs.CreatedAt).UnixMicro(), codec.Time(cs.LastSeen).UnixMicro())
		if isUnique(err) {
			return fmt.Errorf("create session: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		return nil
	})
}

// Session returns a session and its operator.
func (s *Store) Session(ctx context.Context, idHash []byte) (store.ConsoleSession, store.Operator, error) {
	var (
		cs                       store.ConsoleSession
		o                        store.Operator
		created, seen, opCreated int64
		disabled                 sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT s.id_hash, s.operator_id, s.created_at, s.last_seen,
		o.id, o.name, o.role, o.token_hash, o.created_at, o.disabled_at
		FROM console_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = ?`, idHash).Scan(
		&cs.IDHash, &cs.OperatorID, &created, &seen, &o.ID, &o.Name, &o.Role, &o.TokenHash, &opCreated, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return cs, o, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return cs, o, fmt.Errorf("session: %w", err)
	}
	cs.CreatedAt, cs.LastSeen = codec.FromMicros(created, true), codec.FromMicros(seen, true)
	o.CreatedAt, o.DisabledAt = codec.FromMicros(opCreated, true), ts(disabled)
	return cs, o, nil
}

// TouchSession records activity on a session.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?", codec.Time(at).UnixMicro(), idHash)
		if err != nil {
			return fmt.Errorf("touch session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("touch session: %w", store.ErrNotFound)
		}
		return nil
	})
}

// DeleteSession ends a session; deleting an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM console_sessions WHERE id_hash = ?", idHash); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
		return nil
	})
}

// SearchDevices finds devices by hostname prefix on the hostname index.
func (s *Store) SearchDevices(ctx context.Context, prefix string, limit int) ([]store.Device, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+deviceCols+` FROM devices
		WHERE hostname >= ? AND hostname < ? AND hostname <> '' ORDER BY hostname, id LIMIT ?`,
		prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	ds, err := scanDevices(rows)
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	return ds, nil
}
