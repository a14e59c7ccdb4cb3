package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/server/store"
)

// errNothingConsumed rolls back a ConsumeMFACodes that found no code.
var errNothingConsumed = errors.New("no code consumed")

func bumpMFA(ctx context.Context, q Q) (int64, error) {
	var gen int64
	if err := queryRow(ctx, q, "UPDATE mfa_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation").Scan(&gen); err != nil {
		return 0, fmt.Errorf("bump mfa generation: %w", err)
	}
	// An audited action records the generation its change produced.
	store.AuditField(ctx, "generation", strconv.FormatInt(gen, 10))
	return gen, nil
}

func (s *Store) putMFAUser(ctx context.Context, q Q, u store.MFAUser, replace bool, gen int64) error {
	if u.Method == "" {
		u.Method = store.MFAMethodTOTP
	}
	if replace {
		// A replaced user's row goes first, so its own serial is free.
		if _, err := q.Exec(ctx, "DELETE FROM mfa_users WHERE username = ?", u.User); err != nil {
			return fmt.Errorf("put mfa user %s: %w", u.User, err)
		}
	}
	_, err := q.Exec(ctx, `INSERT INTO mfa_users (username, secret_sealed, algorithm, digits, period_seconds, recovery_salt,
		recovery_hashes, created_at, created_by, generation, method, token_serial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.User, u.SealedSecret, u.Algorithm, u.Digits, u.PeriodSeconds, u.RecoverySalt,
		strings.Join(u.RecoveryHashes, " "), s.d.Stamp(u.CreatedAt), u.CreatedBy, gen, u.Method, u.TokenSerial)
	if s.d.IsUnique(err) {
		return fmt.Errorf("put mfa user %s: already enrolled, or token serial %q held by another user: %w", u.User, u.TokenSerial, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put mfa user %s: %w", u.User, err)
	}
	return nil
}

// PutMFAUser stores u in a new MFA generation.
func (s *Store) PutMFAUser(ctx context.Context, u store.MFAUser, replace bool) (int64, error) {
	var gen int64
	err := s.write(ctx, func(q Q) error {
		var err error
		if gen, err = bumpMFA(ctx, q); err != nil {
			return err
		}
		return s.putMFAUser(ctx, q, u, replace, gen)
	})
	return gen, err
}

// ImportMFAUsers stores every user in one generation, or none.
func (s *Store) ImportMFAUsers(ctx context.Context, us []store.MFAUser, replace bool) (int64, error) {
	var gen int64
	err := s.write(ctx, func(q Q) error {
		var err error
		if gen, err = bumpMFA(ctx, q); err != nil {
			return err
		}
		for _, u := range us {
			if err := s.putMFAUser(ctx, q, u, replace, gen); err != nil {
				return err
			}
		}
		return nil
	})
	return gen, err
}

// MFAUsers returns every enrolled user, by name.
func (s *Store) MFAUsers(ctx context.Context) ([]store.MFAUser, error) {
	us, err := list(ctx, s, func(r Rows) (store.MFAUser, error) {
		var (
			u      store.MFAUser
			hashes string
			at     Time
		)
		err := r.Scan(&u.User, &u.SealedSecret, &u.Algorithm, &u.Digits, &u.PeriodSeconds, &u.RecoverySalt,
			&hashes, &at, &u.CreatedBy, &u.Generation, &u.Method, &u.TokenSerial)
		u.RecoveryHashes, u.CreatedAt = strings.Fields(hashes), at.T
		return u, err
	}, `SELECT username, secret_sealed, algorithm, digits, period_seconds, recovery_salt,
		recovery_hashes, created_at, created_by, generation, method, token_serial FROM mfa_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("mfa users: %w", err)
	}
	return us, nil
}

// MFAGeneration is the current MFA generation.
func (s *Store) MFAGeneration(ctx context.Context) (int64, error) {
	var g int64
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT generation FROM mfa_generation WHERE id = 1").Scan(&g)
	})
	if err != nil {
		return 0, fmt.Errorf("mfa generation: %w", err)
	}
	return g, nil
}

// DeleteMFAUser deletes the user's enrolment and temporary codes.
func (s *Store) DeleteMFAUser(ctx context.Context, user string) (int64, error) {
	var gen int64
	err := s.write(ctx, func(q Q) error {
		var n int64
		for _, stmt := range []string{"DELETE FROM mfa_users WHERE username = ?", "DELETE FROM mfa_temp_codes WHERE username = ?"} {
			k, err := q.Exec(ctx, stmt, user)
			if err != nil {
				return fmt.Errorf("delete mfa user %s: %w", user, err)
			}
			n += k
		}
		if _, err := q.Exec(ctx, "DELETE FROM mfa_login_state WHERE username = ?", user); err != nil {
			return fmt.Errorf("delete mfa user %s: %w", user, err)
		}
		if n == 0 {
			return fmt.Errorf("mfa user %s: %w", user, store.ErrNotFound)
		}
		var err error
		gen, err = bumpMFA(ctx, q)
		return err
	})
	return gen, err
}

// PutMFATempCode stores a new temporary code.
func (s *Store) PutMFATempCode(ctx context.Context, c store.MFATempCode) (int64, error) {
	var gen int64
	err := s.write(ctx, func(q Q) error {
		var err error
		if gen, err = bumpMFA(ctx, q); err != nil {
			return err
		}
		_, err = q.Exec(ctx, `INSERT INTO mfa_temp_codes (id, username, salt, hash, created_at, created_by, expires_at, device_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, c.User, c.Salt, c.Hash, s.d.Stamp(c.CreatedAt), c.CreatedBy, s.d.Stamp(c.ExpiresAt), c.DeviceID)
		if s.d.IsUnique(err) {
			return fmt.Errorf("temporary code %s: %w", c.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("put temporary code: %w", err)
		}
		return nil
	})
	return gen, err
}

// MFATempCodes returns the unused codes that expire after now.
func (s *Store) MFATempCodes(ctx context.Context, now time.Time) ([]store.MFATempCode, error) {
	cs, err := list(ctx, s, func(r Rows) (store.MFATempCode, error) {
		var (
			c         store.MFATempCode
			at, until Time
		)
		err := r.Scan(&c.ID, &c.User, &c.Salt, &c.Hash, &at, &c.CreatedBy, &until, &c.DeviceID)
		c.CreatedAt, c.ExpiresAt = at.T, until.T
		return c, err
	}, `SELECT id, username, salt, hash, created_at, created_by, expires_at, device_id FROM mfa_temp_codes
		WHERE used_at IS NULL AND expires_at > ? ORDER BY username, expires_at, id`, s.d.Stamp(now))
	if err != nil {
		return nil, fmt.Errorf("temporary codes: %w", err)
	}
	return cs, nil
}

// UnlockMFAUser raises the user's unlock counter on deviceID.
func (s *Store) UnlockMFAUser(ctx context.Context, user, deviceID string) (gen, counter int64, err error) {
	err = s.write(ctx, func(q Q) error {
		if err := queryRow(ctx, q, `INSERT INTO mfa_unlocks (username, device_id, generation) VALUES (?, ?, 1)
			ON CONFLICT (username, device_id) DO UPDATE SET generation = mfa_unlocks.generation + 1 RETURNING generation`,
			user, deviceID).Scan(&counter); err != nil {
			return fmt.Errorf("unlock mfa user %s: %w", user, err)
		}
		if _, err := q.Exec(ctx, "UPDATE mfa_login_state SET failures = 0, locked_until = NULL WHERE username = ?", user); err != nil {
			return fmt.Errorf("unlock mfa user %s: %w", user, err)
		}
		var err error
		store.AuditField(ctx, "unlock", strconv.FormatInt(counter, 10))
		gen, err = bumpMFA(ctx, q)
		return err
	})
	return gen, counter, err
}

// MFAUnlocks returns every unlock counter.
func (s *Store) MFAUnlocks(ctx context.Context) ([]store.MFAUnlock, error) {
	us, err := list(ctx, s, func(r Rows) (store.MFAUnlock, error) {
		var u store.MFAUnlock
		return u, r.Scan(&u.User, &u.DeviceID, &u.Generation)
	}, "SELECT username, device_id, generation FROM mfa_unlocks ORDER BY username, device_id")
	if err != nil {
		return nil, fmt.Errorf("mfa unlocks: %w", err)
	}
	return us, nil
}

// consumeChunk bounds the IDs in one UPDATE (SQLite allows 32766
// arguments, PostgreSQL 65535).
const consumeChunk = 500

// ConsumeMFACodes marks the user's codes with these IDs used.
func (s *Store) ConsumeMFACodes(ctx context.Context, user string, ids []string, at time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	found := 0
	err := s.write(ctx, func(q Q) error {
		found = 0
		var hashes string
		err := queryRow(ctx, q, "SELECT recovery_hashes FROM mfa_users WHERE username = ?"+s.d.ForUpdate(""), user).Scan(&hashes)
		if err != nil && !errors.Is(err, errNoRows) {
			return fmt.Errorf("consume mfa codes of %s: %w", user, err)
		}
		if err == nil {
			all := strings.Fields(hashes)
			keep := slices.DeleteFunc(slices.Clone(all), func(h string) bool { return slices.Contains(ids, mfabundle.CodeID(h)) })
			if n := len(all) - len(keep); n > 0 {
				found += n
				if _, err := q.Exec(ctx, "UPDATE mfa_users SET recovery_hashes = ? WHERE username = ?", strings.Join(keep, " "), user); err != nil {
					return fmt.Errorf("consume mfa codes of %s: %w", user, err)
				}
			}
		}
		for chunk := range slices.Chunk(ids, consumeChunk) {
			args := []any{s.d.Stamp(at), user}
			for _, id := range chunk {
				args = append(args, id)
			}
			n, err := q.Exec(ctx, "UPDATE mfa_temp_codes SET used_at = ? WHERE username = ? AND id IN ("+in(len(chunk))+") AND used_at IS NULL", args...)
			if err != nil {
				return fmt.Errorf("consume mfa codes of %s: %w", user, err)
			}
			found += int(n)
		}
		if found == 0 {
			// Nothing changed: roll back, so an audited call takes no
			// record for a use that was consumed before.
			return errNothingConsumed
		}
		store.AuditField(ctx, "consumed", strconv.Itoa(found))
		_, err = bumpMFA(ctx, q)
		return err
	})
	if errors.Is(err, errNothingConsumed) {
		return 0, nil
	}
	return found, err
}

// RecordMFALogins applies a device's login events in order.
func (s *Store) RecordMFALogins(ctx context.Context, deviceID string, evs []store.MFALoginEvent, at time.Time) (bool, error) {
	if len(evs) == 0 {
		return false, nil
	}
	changed := false
	err := s.write(ctx, func(q Q) error {
		changed = false
		stamp := s.d.Stamp(at)
		for _, e := range evs {
			var n int64
			var err error
			switch e.Kind {
			case store.MFALoginSuccess:
				if e.Step > 0 {
					n, err = q.Exec(ctx, `INSERT INTO mfa_login_state (username, device_id, last_step, updated_at) VALUES (?, ?, ?, ?)
						ON CONFLICT (username, device_id) DO UPDATE SET last_step = excluded.last_step, updated_at = excluded.updated_at
						WHERE mfa_login_state.last_step < excluded.last_step`, e.User, deviceID, e.Step, stamp)
					if err != nil {
						return fmt.Errorf("record mfa login of %s: %w", e.User, err)
					}
					changed = changed || n > 0
				}
				n, err = q.Exec(ctx, `UPDATE mfa_login_state SET failures = 0, locked_until = NULL, updated_at = ?
					WHERE username = ? AND (failures <> 0 OR locked_until IS NOT NULL)`, stamp, e.User)
			case store.MFALoginFailure:
				n, err = q.Exec(ctx, `INSERT INTO mfa_login_state (username, device_id, failures, updated_at) VALUES (?, ?, ?, ?)
					ON CONFLICT (username, device_id) DO UPDATE SET failures = excluded.failures, updated_at = excluded.updated_at
					WHERE mfa_login_state.failures <> excluded.failures`, e.User, deviceID, e.Failures, stamp)
			case store.MFALoginLockout:
				n, err = q.Exec(ctx, `INSERT INTO mfa_login_state (username, device_id, locked_until, updated_at) VALUES (?, ?, ?, ?)
					ON CONFLICT (username, device_id) DO UPDATE SET failures = 0, locked_until = excluded.locked_until, updated_at = excluded.updated_at`,
					e.User, deviceID, s.d.Stamp(e.Until), stamp)
			default:
				return fmt.Errorf("record mfa login: unknown kind %d", e.Kind)
			}
			if err != nil {
				return fmt.Errorf("record mfa login of %s: %w", e.User, err)
			}
			changed = changed || n > 0
		}
		if !changed {
			return nil
		}
		_, err := bumpMFA(ctx, q)
		return err
	})
	return changed, err
}

// MFALoginStates returns every replay and lock-out row.
func (s *Store) MFALoginStates(ctx context.Context) ([]store.MFALoginState, error) {
	rows, err := list(ctx, s, func(r Rows) (store.MFALoginState, error) {
		var (
			st            store.MFALoginState
			until, update Time
		)
		err := r.Scan(&st.User, &st.DeviceID, &st.LastStep, &st.Failures, &until, &update)
		st.LockedUntil, st.UpdatedAt = until.T, update.T
		return st, err
	}, "SELECT username, device_id, last_step, failures, locked_until, updated_at FROM mfa_login_state ORDER BY username, device_id")
	if err != nil {
		return nil, fmt.Errorf("mfa login state: %w", err)
	}
	return rows, nil
}
