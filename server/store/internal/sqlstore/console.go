package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// SetOperatorLogin creates or replaces an operator's console credential.
func (s *Store) SetOperatorLogin(ctx context.Context, l store.OperatorLogin) error {
	return s.write(ctx, func(q Q) error {
		var one int
		err := queryRow(ctx, q, "SELECT 1 FROM operators WHERE id = ?", l.OperatorID).Scan(&one)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("set operator login: operator %s: %w", l.OperatorID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("set operator login: %w", err)
		}
		_, err = q.Exec(ctx, `INSERT INTO operator_logins
			(operator_id, login, password_hash, totp_secret, failures, locked_until, last_totp_step, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (operator_id) DO UPDATE SET login = excluded.login, password_hash = excluded.password_hash,
				totp_secret = excluded.totp_secret, failures = excluded.failures, locked_until = excluded.locked_until,
				last_totp_step = excluded.last_totp_step, updated_at = excluded.updated_at`,
			l.OperatorID, l.Login, l.PasswordHash, l.TOTPSecret, l.Failures, s.d.Native(l.LockedUntil),
			l.LastTOTPStep, s.d.Stamp(l.UpdatedAt))
		if s.d.IsUnique(err) {
			return fmt.Errorf("set operator login %q: %w", l.Login, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("set operator login: %w", err)
		}
		return nil
	})
}

const loginCols = `l.operator_id, l.login, l.password_hash, l.totp_secret, l.failures, l.locked_until, l.last_totp_step, l.updated_at,
	o.id, o.name, o.role, o.token_hash, o.created_at, o.disabled_at, o.token_expires_at`

// operatorLogin reads the login and operator where the condition holds
// (its one argument arg).
func operatorLogin(ctx context.Context, q Q, where string, arg any) (store.OperatorLogin, store.Operator, error) {
	var (
		l                                  store.OperatorLogin
		o                                  store.Operator
		locked, updated, created, disabled Time
		expires                            Time
	)
	err := queryRow(ctx, q, "SELECT "+loginCols+" FROM operator_logins l JOIN operators o ON o.id = l.operator_id WHERE "+where, arg).Scan(
		&l.OperatorID, &l.Login, &l.PasswordHash, &l.TOTPSecret, &l.Failures, &locked, &l.LastTOTPStep, &updated,
		&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled, &expires)
	if errors.Is(err, errNoRows) {
		return l, o, fmt.Errorf("operator login: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, o, fmt.Errorf("operator login: %w", err)
	}
	l.LockedUntil, l.UpdatedAt = locked.T, updated.T
	o.CreatedAt, o.DisabledAt, o.TokenExpiresAt = created.T, disabled.T, expires.T
	return l, o, nil
}

// OperatorLogin finds a console credential by login name.
func (s *Store) OperatorLogin(ctx context.Context, login string) (l store.OperatorLogin, o store.Operator, err error) {
	err = s.read(ctx, func(q Q) error {
		l, o, err = operatorLogin(ctx, q, "l.login = ?", login)
		return err
	})
	return l, o, err
}

// LoginFailed counts a failure and locks the login at maxFailures. The
// row lock (FOR UPDATE on PostgreSQL) makes concurrent failures count one
// by one.
func (s *Store) LoginFailed(ctx context.Context, operatorID string, at time.Time, maxFailures int, lockFor time.Duration) (store.OperatorLogin, error) {
	var out store.OperatorLogin
	err := s.write(ctx, func(q Q) error {
		l, _, err := operatorLogin(ctx, q, "l.operator_id = ?"+s.d.ForUpdate("l"), operatorID)
		if err != nil {
			return err
		}
		l.Failures++
		if l.Failures >= maxFailures {
			l.Failures, l.LockedUntil = 0, at.Add(lockFor)
		}
		l.LockedUntil = codec.Time(l.LockedUntil)
		if _, err := q.Exec(ctx, "UPDATE operator_logins SET failures = ?, locked_until = ? WHERE operator_id = ?",
			l.Failures, s.d.Native(l.LockedUntil), operatorID); err != nil {
			return fmt.Errorf("login failed: %w", err)
		}
		out = l
		return nil
	})
	return out, err
}

// LoginSucceeded resets the failure count and records the TOTP step.
func (s *Store) LoginSucceeded(ctx context.Context, operatorID string, step int64, at time.Time) error {
	return s.auto(ctx, func(q Q) error {
		n, err := q.Exec(ctx, `UPDATE operator_logins SET failures = 0, locked_until = NULL, last_totp_step = ?
			WHERE operator_id = ? AND last_totp_step < ?`, step, operatorID, step)
		if err != nil {
			return fmt.Errorf("login succeeded: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("login of %s: TOTP step %d already used or unknown login: %w", operatorID, step, store.ErrConflict)
		}
		return nil
	})
}

// CreateSession stores a new session, in a transaction of its own so that
// the audited sign-in commits its record with the session.
func (s *Store) CreateSession(ctx context.Context, cs store.ConsoleSession) error {
	err := s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, "INSERT INTO console_sessions (id_hash, operator_id, created_at, last_seen) VALUES (?, ?, ?, ?)",
			cs.IDHash, cs.OperatorID, s.d.Stamp(cs.CreatedAt), s.d.Stamp(cs.LastSeen))
		return err
	})
	if s.d.IsUnique(err) {
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
		cs                                 store.ConsoleSession
		o                                  store.Operator
		created, seen, opCreated, disabled Time
		expires                            Time
	)
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, `SELECT s.id_hash, s.operator_id, s.created_at, s.last_seen,
			o.id, o.name, o.role, o.token_hash, o.created_at, o.disabled_at, o.token_expires_at
			FROM console_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = ?`, idHash).Scan(
			&cs.IDHash, &cs.OperatorID, &created, &seen, &o.ID, &o.Name, &o.Role, &o.TokenHash, &opCreated, &disabled, &expires)
	})
	if errors.Is(err, errNoRows) {
		return cs, o, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return cs, o, fmt.Errorf("session: %w", err)
	}
	cs.CreatedAt, cs.LastSeen = created.T, seen.T
	o.CreatedAt, o.DisabledAt, o.TokenExpiresAt = opCreated.T, disabled.T, expires.T
	return cs, o, nil
}

// TouchSession records activity on a session.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return s.auto(ctx, func(q Q) error {
		n, err := q.Exec(ctx, "UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?", s.d.Stamp(at), idHash)
		if err != nil {
			return fmt.Errorf("touch session: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("touch session: %w", store.ErrNotFound)
		}
		return nil
	})
}

// DeleteSession ends a session; deleting an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	return s.auto(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, "DELETE FROM console_sessions WHERE id_hash = ?", idHash); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
		return nil
	})
}
