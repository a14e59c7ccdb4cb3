package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// PutMFAUser stores u in a new MFA generation.
func (s *Store) PutMFAUser(ctx context.Context, u store.MFAUser, replace bool) (int64, error) {
	var gen int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "UPDATE mfa_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation").Scan(&gen); err != nil {
			return fmt.Errorf("put mfa user: bump generation: %w", err)
		}
		q := "INSERT INTO mfa_users (username, secret_sealed, algorithm, digits, period_seconds, recovery_salt, recovery_hashes, created_at, created_by, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		if replace {
			q = strings.Replace(q, "INSERT", "INSERT OR REPLACE", 1)
		}
		_, err := tx.ExecContext(ctx, q, u.User, u.SealedSecret, u.Algorithm, u.Digits, u.PeriodSeconds, u.RecoverySalt,
			strings.Join(u.RecoveryHashes, " "), codec.Time(u.CreatedAt).UnixMicro(), u.CreatedBy, gen)
		if isUnique(err) {
			return fmt.Errorf("put mfa user %s: %w", u.User, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("put mfa user %s: %w", u.User, err)
		}
		return nil
	})
	return gen, err
}

// MFAUsers returns every enrolled user, by name.
func (s *Store) MFAUsers(ctx context.Context) ([]store.MFAUser, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT username, secret_sealed, algorithm, digits, period_seconds, recovery_salt,
		recovery_hashes, created_at, created_by, generation FROM mfa_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("mfa users: %w", err)
	}
	defer rows.Close()
	var us []store.MFAUser
	for rows.Next() {
		var (
			u      store.MFAUser
			hashes string
			at     int64
		)
		if err := rows.Scan(&u.User, &u.SealedSecret, &u.Algorithm, &u.Digits, &u.PeriodSeconds, &u.RecoverySalt,
			&hashes, &at, &u.CreatedBy, &u.Generation); err != nil {
			return nil, fmt.Errorf("mfa users: %w", err)
		}
		u.RecoveryHashes, u.CreatedAt = strings.Fields(hashes), codec.FromMicros(at, true)
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mfa users: %w", err)
	}
	return us, nil
}

// MFAGeneration is the current MFA generation.
func (s *Store) MFAGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := s.r.QueryRowContext(ctx, "SELECT generation FROM mfa_generation WHERE id = 1").Scan(&g); err != nil {
		return 0, fmt.Errorf("mfa generation: %w", err)
	}
	return g, nil
}
