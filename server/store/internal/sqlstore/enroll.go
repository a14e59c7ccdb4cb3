package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
)

// CreateToken stores an enrolment token (its hash only).
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	err := s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, `INSERT INTO tokens (id, hash, created_at, expires_at, uses, used, note, created_by, device_group)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, t.Hash, s.d.Stamp(t.CreatedAt), s.d.Stamp(t.ExpiresAt),
			t.Uses, t.Used, t.Note, t.CreatedBy, t.Group)
		return err
	})
	if s.d.IsUnique(err) {
		return fmt.Errorf("create token %s: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// Enroll checks the token, finds or creates the device, signs and counts
// the use, all in one transaction. The token row is locked (ForUpdate) so
// that enrolments racing on one token cannot overspend it.
func (s *Store) Enroll(ctx context.Context, p store.EnrollParams) (store.EnrollResult, error) {
	var res store.EnrollResult
	err := s.write(ctx, func(q Q) error {
		var (
			tokenID    string
			expires    Time
			uses, used int
			group      string
		)
		err := queryRow(ctx, q, "SELECT id, expires_at, uses, used, device_group FROM tokens WHERE hash = ?"+s.d.ForUpdate(""), p.TokenHash).
			Scan(&tokenID, &expires, &uses, &used, &group)
		if errors.Is(err, errNoRows) {
			return store.ErrTokenUnknown
		}
		if err != nil {
			return fmt.Errorf("enrol: read token: %w", err)
		}
		tokenErr := rules.CheckToken(p.Now, expires.T, uses, used)
		if errors.Is(tokenErr, store.ErrTokenExpired) {
			return tokenErr
		}
		machineID := p.Facts.GetMachineId()
		deviceID := p.NewDeviceID
		byEK := false
		if p.EKFingerprint != "" {
			err := queryRow(ctx, q, "SELECT id FROM devices WHERE ek_fingerprint = ?"+s.d.ForUpdate(""), p.EKFingerprint).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled, byEK = true, true
			case !errors.Is(err, errNoRows):
				return fmt.Errorf("enrol: find EK: %w", err)
			}
		}
		if machineID != "" && !byEK {
			err := queryRow(ctx, q, "SELECT id FROM devices WHERE machine_id = ?"+s.d.ForUpdate(""), machineID).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled = true
			case !errors.Is(err, errNoRows):
				return fmt.Errorf("enrol: find machine: %w", err)
			}
		}
		if deviceID == "" {
			return errors.New("enrol: no device ID for a new device")
		}
		// A retry of this machine's enrolment with this token and key
		// (its first answer was lost) counts no second use.
		repeated, err := repeatedUse(ctx, q, tokenID, machineID, deviceID, p.KeyHash)
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
			if _, err := q.Exec(ctx, "UPDATE tokens SET used = used + 1 WHERE id = ?", tokenID); err != nil {
				return fmt.Errorf("enrol: count token use: %w", err)
			}
			if machineID != "" && len(p.KeyHash) > 0 {
				if _, err := q.Exec(ctx, `INSERT INTO token_uses (token_id, machine_id, key_hash, device_id, at) VALUES (?, ?, ?, ?, ?)
					ON CONFLICT (token_id, machine_id) DO UPDATE SET key_hash = excluded.key_hash, device_id = excluded.device_id, at = excluded.at`,
					tokenID, machineID, p.KeyHash, deviceID, s.d.Stamp(p.Now)); err != nil {
					return fmt.Errorf("enrol: record token use: %w", err)
				}
			}
		}
		facts, err := codec.Marshal(p.Facts)
		if err != nil {
			return fmt.Errorf("enrol %s: %w", deviceID, err)
		}
		now := s.d.Stamp(p.Now)
		if res.Reenrolled {
			// The record, controls and history stay. A revoked device was
			// re-imaged by IT: the revocation ends and its verdict starts
			// over, as for a new device.
			_, err = q.Exec(ctx, `UPDATE devices SET facts = ?, hostname = ?, enrolled_at = ?, cert_serial = ?,
				verdict = CASE WHEN revoked_at IS NULL THEN verdict ELSE ? END,
				reasons = CASE WHEN revoked_at IS NULL THEN reasons ELSE '[]' END,
				revoked_at = NULL, revoked_reason = '', prev_cert_serial = NULL,
				ek_fingerprint = COALESCE(?, ek_fingerprint), key_attested = ?,
				device_group = CASE WHEN ? = '' THEN device_group ELSE ? END
				WHERE id = ?`, facts, p.Facts.GetHostname(), now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.EKFingerprint != "", group, group, deviceID)
			if err == nil && byEK && machineID != "" {
				// The same TPM with a new machine ID: the machine was
				// re-imaged. The EK names the device.
				_, err = q.Exec(ctx, "UPDATE devices SET machine_id = ? WHERE id = ?", machineID, deviceID)
				if s.d.IsUnique(err) {
					return fmt.Errorf("enrol %s: machine ID %s belongs to another device: %w", deviceID, machineID, store.ErrConflict)
				}
			}
		} else {
			_, err = q.Exec(ctx, `INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial, verdict, ek_fingerprint, key_attested, device_group)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, deviceID, nullString(machineID), p.Facts.GetHostname(), facts, now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.EKFingerprint != "", group)
			if s.d.IsUnique(err) {
				return fmt.Errorf("enrol %s: %w", deviceID, store.ErrConflict)
			}
		}
		if err != nil {
			return fmt.Errorf("enrol %s: store device: %w", deviceID, err)
		}
		res.Device, err = getDevice(ctx, q, deviceID)
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
		revoked Time
	)
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT cert_serial, revoked_at FROM devices WHERE id = ?", deviceID).Scan(&serial, &revoked)
	})
	if errors.Is(err, errNoRows) {
		return "", time.Time{}, fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("device credential of %s: %w", deviceID, err)
	}
	return serial, revoked.T, nil
}

// nullString is s as an argument, NULL when empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// repeatedUse reports whether machineID already spent a use of tokenID
// with the same key, for the same device, and that device is not revoked
// since (a revoked device's retry must not lift its revocation for free).
func repeatedUse(ctx context.Context, q Q, tokenID, machineID, deviceID string, keyHash []byte) (bool, error) {
	if machineID == "" || len(keyHash) == 0 {
		return false, nil
	}
	var (
		stored  []byte
		usedBy  string
		revoked bool
	)
	err := queryRow(ctx, q, `SELECT u.key_hash, u.device_id, d.revoked_at IS NOT NULL FROM token_uses u JOIN devices d ON d.id = u.device_id
		WHERE u.token_id = ? AND u.machine_id = ?`, tokenID, machineID).Scan(&stored, &usedBy, &revoked)
	switch {
	case errors.Is(err, errNoRows):
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
	err := s.write(ctx, func(q Q) error {
		var (
			cur, prev string
			revoked   bool
		)
		err := queryRow(ctx, q, "SELECT cert_serial, coalesce(prev_cert_serial, ''), revoked_at IS NOT NULL FROM devices WHERE id = ?"+s.d.ForUpdate(""), p.DeviceID).
			Scan(&cur, &prev, &revoked)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("renew %s: %w", p.DeviceID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("renew %s: read device: %w", p.DeviceID, err)
		}
		switch {
		case revoked:
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
		if _, err := q.Exec(ctx, "UPDATE devices SET cert_serial = ?, prev_cert_serial = ? WHERE id = ?",
			serial, p.PresentedSerial, p.DeviceID); err != nil {
			return fmt.Errorf("renew %s: store serial: %w", p.DeviceID, err)
		}
		res.CertDER = cert
		res.Device, err = getDevice(ctx, q, p.DeviceID)
		return err
	})
	if err != nil {
		return store.RenewResult{}, err
	}
	return res, nil
}
