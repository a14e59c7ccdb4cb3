package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
)

// CreateToken stores an enrolment token (its hash only).
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, hash, created_at, expires_at, uses, used, note, created_by, device_group)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, t.Hash, codec.Time(t.CreatedAt).UnixMicro(),
			codec.Time(t.ExpiresAt).UnixMicro(), t.Uses, t.Used, t.Note, t.CreatedBy, t.Group)
		if isUnique(err) {
			return fmt.Errorf("create token %s: %w", t.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create token %s: %w", t.ID, err)
		}
		return nil
	})
}

// Enroll checks the token, finds or creates the device, signs and counts
// the use, all in one transaction.
func (s *Store) Enroll(ctx context.Context, p store.EnrollParams) (store.EnrollResult, error) {
	var res store.EnrollResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var (
			tokenID    string
			expires    int64
			uses, used int
			group      string
		)
		err := tx.QueryRowContext(ctx, "SELECT id, expires_at, uses, used, device_group FROM tokens WHERE hash = ?", p.TokenHash).
			Scan(&tokenID, &expires, &uses, &used, &group)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrTokenUnknown
		}
		if err != nil {
			return fmt.Errorf("enrol: read token: %w", err)
		}
		if err := rules.CheckToken(p.Now, codec.FromMicros(expires, true), uses, used); err != nil {
			return err
		}
		machineID := p.Facts.GetMachineId()
		deviceID := p.NewDeviceID
		byEK := false
		if p.EKFingerprint != "" {
			err := tx.QueryRowContext(ctx, "SELECT id FROM devices WHERE ek_fingerprint = ?", p.EKFingerprint).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled, byEK = true, true
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("enrol: find EK: %w", err)
			}
		}
		if machineID != "" && !byEK {
			err := tx.QueryRowContext(ctx, "SELECT id FROM devices WHERE machine_id = ?", machineID).Scan(&deviceID)
			switch {
			case err == nil:
				res.Reenrolled = true
			case !errors.Is(err, sql.ErrNoRows):
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
		if _, err := tx.ExecContext(ctx, "UPDATE tokens SET used = used + 1 WHERE id = ?", tokenID); err != nil {
			return fmt.Errorf("enrol: count token use: %w", err)
		}
		facts, err := codec.Marshal(p.Facts)
		if err != nil {
			return fmt.Errorf("enrol %s: %w", deviceID, err)
		}
		now := codec.Time(p.Now).UnixMicro()
		if res.Reenrolled {
			// The record, controls and history stay. A revoked device was
			// re-imaged by IT: the revocation ends and its verdict starts
			// over, as for a new device.
			_, err = tx.ExecContext(ctx, `UPDATE devices SET facts = ?, hostname = ?, enrolled_at = ?, cert_serial = ?,
				verdict = CASE WHEN revoked_at IS NULL THEN verdict ELSE ? END,
				reasons = CASE WHEN revoked_at IS NULL THEN reasons ELSE '[]' END,
				revoked_at = NULL, revoked_reason = '',
				ek_fingerprint = COALESCE(?, ek_fingerprint), key_attested = ?,
				device_group = CASE WHEN ? = '' THEN device_group ELSE ? END
				WHERE id = ?`, facts, p.Facts.GetHostname(), now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.EKFingerprint != "", group, group, deviceID)
			if err == nil && byEK && machineID != "" {
				// The same TPM with a new machine ID: the machine was
				// re-imaged. The EK names the device.
				_, err = tx.ExecContext(ctx, "UPDATE devices SET machine_id = ? WHERE id = ?", machineID, deviceID)
				if isUnique(err) {
					return fmt.Errorf("enrol %s: machine ID %s belongs to another device: %w", deviceID, machineID, store.ErrConflict)
				}
			}
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial, verdict, ek_fingerprint, key_attested, device_group)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, deviceID, nullString(machineID), p.Facts.GetHostname(), facts, now, serial, store.VerdictNeverReported,
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

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// DeviceCredential returns the device's current certificate serial and
// revocation time.
func (s *Store) DeviceCredential(ctx context.Context, deviceID string) (string, time.Time, error) {
	var (
		serial  string
		revoked sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, "SELECT cert_serial, revoked_at FROM devices WHERE id = ?", deviceID).Scan(&serial, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("device credential of %s: %w", deviceID, err)
	}
	return serial, ts(revoked), nil
}
