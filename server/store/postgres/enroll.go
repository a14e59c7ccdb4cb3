package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
)

// CreateToken stores an enrolment token (its hash only).
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO tokens (id, hash, created_at, expires_at, uses, used, note, created_by, device_group)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, t.ID, t.Hash, codec.Time(t.CreatedAt), codec.Time(t.ExpiresAt),
		t.Uses, t.Used, t.Note, t.CreatedBy, t.Group)
	if isUnique(err) {
		return fmt.Errorf("create token %s: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// Enroll checks the token, finds or creates the device, signs and counts
// the use, all in one transaction. The token row is locked (FOR UPDATE) so
// that enrolments racing on one token cannot overspend it.
func (s *Store) Enroll(ctx context.Context, p store.EnrollParams) (store.EnrollResult, error) {
	var res store.EnrollResult
	err := s.write(ctx, func(tx pgx.Tx) error {
		var (
			tokenID    string
			expires    time.Time
			uses, used int
			group      string
		)
		err := tx.QueryRow(ctx, "SELECT id, expires_at, uses, used, device_group FROM tokens WHERE hash = $1 FOR UPDATE", p.TokenHash).
			Scan(&tokenID, &expires, &uses, &used, &group)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrTokenUnknown
		}
		if err != nil {
			return fmt.Errorf("enrol: read token: %w", err)
		}
		if err := rules.CheckToken(p.Now, expires, uses, used); err != nil {
			return err
		}
		machineID := p.Facts.GetMachineId()
		deviceID := p.NewDeviceID
		byEK := false
		if p.EKFingerprint != "" {
			err := tx.QueryRow(ctx, "SELECT id FROM devices WHERE ek_fingerprint = $1 FOR UPDATE", p.EKFingerprint).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled, byEK = true, true
			case !errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("enrol: find EK: %w", err)
			}
		}
		if machineID != "" && !byEK {
			err := tx.QueryRow(ctx, "SELECT id FROM devices WHERE machine_id = $1 FOR UPDATE", machineID).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled = true
			case !errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("enrol: find machine: %w", err)
			}
		}
		if deviceID == "" {
			return errors.New("enrol: no device ID for a new device")
		}
		cert, serial, err := p.Sign(deviceID)
		if err != nil {
			return fmt.Errorf("enrol %s: sign: %w", deviceID, err)
		}
		res.CertDER = cert
		if _, err := tx.Exec(ctx, "UPDATE tokens SET used = used + 1 WHERE id = $1", tokenID); err != nil {
			return fmt.Errorf("enrol: count token use: %w", err)
		}
		facts, err := codec.Marshal(p.Facts)
		if err != nil {
			return fmt.Errorf("enrol %s: %w", deviceID, err)
		}
		now := codec.Time(p.Now)
		if res.Reenrolled {
			// The record, controls and history stay. A revoked device was
			// re-imaged by IT: the revocation ends and its verdict starts
			// over, as for a new device.
			_, err = tx.Exec(ctx, `UPDATE devices SET facts = $1, hostname = $2, enrolled_at = $3, cert_serial = $4,
				verdict = CASE WHEN revoked_at IS NULL THEN verdict ELSE $5 END,
				reasons = CASE WHEN revoked_at IS NULL THEN reasons ELSE '[]' END,
				revoked_at = NULL, revoked_reason = '',
				ek_fingerprint = COALESCE($6, ek_fingerprint), key_attested = $7,
				device_group = CASE WHEN $9 = '' THEN device_group ELSE $9 END
				WHERE id = $8`, facts, p.Facts.GetHostname(), now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.EKFingerprint != "", deviceID, group)
			if err == nil && byEK && machineID != "" {
				// The same TPM with a new machine ID: the machine was
				// re-imaged. The EK names the device.
				_, err = tx.Exec(ctx, "UPDATE devices SET machine_id = $1 WHERE id = $2", machineID, deviceID)
				if isUnique(err) {
					return fmt.Errorf("enrol %s: machine ID %s belongs to another device: %w", deviceID, machineID, store.ErrConflict)
				}
			}
		} else {
			var mid any
			if machineID != "" {
				mid = machineID
			}
			_, err = tx.Exec(ctx, `INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial, verdict, ek_fingerprint, key_attested, device_group)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, deviceID, mid, p.Facts.GetHostname(), facts, now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.EKFingerprint != "", group)
			if isUnique(err) {
				return fmt.Errorf("enrol %s: %w", deviceID, store.ErrConflict)
			}
		}
		if err != nil {
			return fmt.Errorf("enrol %s: store device: %w", deviceID, err)
		}
		res.Device, err = getDevice(ctx, tx, deviceID)
		return err
	})
	if err != nil {
		return store.EnrollResult{}, err
	}
	return res, nil
}

// DeviceCredential returns the device's current certificate serial and
// revocation time.
func (s *Store) DeviceCredential(ctx context.Context, deviceID string) (string, time.Time, error) {
	var (
		serial  string
		revoked *time.Time
	)
	err := s.pool.QueryRow(ctx, "SELECT cert_serial, revoked_at FROM devices WHERE id = $1", deviceID).Scan(&serial, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("device credential of %s: %w", deviceID, err)
	}
	return serial, ts(revoked), nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
