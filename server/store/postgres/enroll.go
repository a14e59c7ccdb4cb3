package postgres

import (
	"bytes"
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
	// In a transaction of its own so that an audited call (store.WithAudit)
	// commits its record with it.
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tokens (id, hash, created_at, expires_at, uses, used, note, created_by, device_group)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, t.ID, t.Hash, codec.Time(t.CreatedAt), codec.Time(t.ExpiresAt),
			t.Uses, t.Used, t.Note, t.CreatedBy, t.Group)
		return err
	})
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
		tokenErr := rules.CheckToken(p.Now, expires, uses, used)
		if errors.Is(tokenErr, store.ErrTokenExpired) {
			return tokenErr
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
		// A retry of this machine's enrolment with this token and key
		// (its first answer was lost) counts no second use.
		repeated, err := repeatedUse(ctx, tx, tokenID, machineID, deviceID, p.KeyHash)
		if err != nil {
			return err
		}
		if !repeated && tokenErr != nil {
			return tokenErr
		}
		if repeated {
			store.AuditField(ctx, "retry", "same-key")
		}
		cert, serial, err := p.Sign(deviceID)
		if err != nil {
			return fmt.Errorf("enrol %s: sign: %w", deviceID, err)
		}
		res.CertDER, res.Repeated = cert, repeated
		if !repeated {
			if _, err := tx.Exec(ctx, "UPDATE tokens SET used = used + 1 WHERE id = $1", tokenID); err != nil {
				return fmt.Errorf("enrol: count token use: %w", err)
			}
			if machineID != "" && len(p.KeyHash) > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO token_uses (token_id, machine_id, key_hash, device_id, at) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (token_id, machine_id) DO UPDATE SET key_hash = excluded.key_hash, device_id = excluded.device_id, at = excluded.at`,
					tokenID, machineID, p.KeyHash, deviceID, codec.Time(p.Now)); err != nil {
					return fmt.Errorf("enrol: record token use: %w", err)
				}
			}
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
				revoked_at = NULL, revoked_reason = '', prev_cert_serial = NULL,
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

// repeatedUse reports whether machineID already spent a use of tokenID
// with the same key, for the same device, and that device is not revoked
// since (a revoked device's retry must not lift its revocation for free).
func repeatedUse(ctx context.Context, tx pgx.Tx, tokenID, machineID, deviceID string, keyHash []byte) (bool, error) {
	if machineID == "" || len(keyHash) == 0 {
		return false, nil
	}
	var (
		stored  []byte
		usedBy  string
		revoked bool
	)
	err := tx.QueryRow(ctx, `SELECT u.key_hash, u.device_id, d.revoked_at IS NOT NULL FROM token_uses u JOIN devices d ON d.id = u.device_id
		WHERE u.token_id = $1 AND u.machine_id = $2`, tokenID, machineID).Scan(&stored, &usedBy, &revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("enrol: read token use: %w", err)
	}
	return bytes.Equal(stored, keyHash) && usedBy == deviceID && !revoked, nil
}

// Renew issues a device a new certificate for the key it proved with its
// current one (see store.Enrollment). The device row is locked so that a
// renewal cannot race a revocation or a re-enrolment.
func (s *Store) Renew(ctx context.Context, p store.RenewParams) (store.RenewResult, error) {
	var res store.RenewResult
	err := s.write(ctx, func(tx pgx.Tx) error {
		var (
			cur, prev string
			revoked   *time.Time
		)
		err := tx.QueryRow(ctx, "SELECT cert_serial, coalesce(prev_cert_serial, ''), revoked_at FROM devices WHERE id = $1 FOR UPDATE", p.DeviceID).
			Scan(&cur, &prev, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("renew %s: %w", p.DeviceID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("renew %s: read device: %w", p.DeviceID, err)
		}
		switch {
		case revoked != nil:
			return store.ErrDeviceRevoked
		case p.PresentedSerial == "" || (p.PresentedSerial != cur && p.PresentedSerial != prev):
			return store.ErrCertSuperseded
		}
		cert, serial, err := p.Sign()
		if err != nil {
			return fmt.Errorf("renew %s: sign: %w", p.DeviceID, err)
		}
		// The presented certificate is the one the agent is known to
		// hold; an earlier renewal's certificate it never saved is dropped.
		if _, err := tx.Exec(ctx, "UPDATE devices SET cert_serial = $1, prev_cert_serial = $2 WHERE id = $3",
			serial, p.PresentedSerial, p.DeviceID); err != nil {
			return fmt.Errorf("renew %s: store serial: %w", p.DeviceID, err)
		}
		res.CertDER = cert
		res.Device, err = getDevice(ctx, tx, p.DeviceID)
		return err
	})
	if err != nil {
		return store.RenewResult{}, err
	}
	return res, nil
}
