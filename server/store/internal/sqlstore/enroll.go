package sqlstore

import (
	"bytes"
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
//
// Which record an enrolment names is decided by proof only, in this
// order: a signature by the device's current key (ProvenDeviceID), the
// same proven TPM EK, or a retry of an enrolment just made (same token,
// machine ID and new key, whose CSR the key signed). A machine ID that
// names an existing device without any of these makes a new record
// flagged CloneOf. A revoked device is never re-enrolled: its proof is
// answered ErrDeviceRevoked, and a claim of its machine ID makes a clone.
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
		if p.ProvenDeviceID != "" {
			var cur, prev string
			var revoked bool
			err := queryRow(ctx, q, "SELECT cert_serial, coalesce(prev_cert_serial, ''), revoked_at IS NOT NULL FROM devices WHERE id = ?"+s.d.ForUpdate(""),
				p.ProvenDeviceID).Scan(&cur, &prev, &revoked)
			switch {
			case errors.Is(err, errNoRows):
				// A certificate of ours for a record that is gone: no proof.
			case err != nil:
				return fmt.Errorf("enrol: read proven device: %w", err)
			case p.ProvenSerial != cur && p.ProvenSerial != prev:
				// An old key of the device (superseded): no proof.
				store.AuditField(ctx, "proof", "superseded-key")
			case revoked:
				return store.ErrDeviceRevoked
			default:
				deviceID, res.Reenrolled, res.By = p.ProvenDeviceID, true, "key"
			}
		}
		if !res.Reenrolled && p.EKFingerprint != "" {
			var revoked bool
			err := queryRow(ctx, q, "SELECT id, revoked_at IS NOT NULL FROM devices WHERE ek_fingerprint = ?"+s.d.ForUpdate(""), p.EKFingerprint).Scan(&deviceID, &revoked)
			switch {
			case err == nil && revoked:
				return store.ErrDeviceRevoked
			case err == nil:
				res.Reenrolled, res.By = true, "ek"
			case !errors.Is(err, errNoRows):
				return fmt.Errorf("enrol: find EK: %w", err)
			}
		}
		// A retry of this machine's enrolment with this token and key
		// (its first answer was lost) names the device it made and counts
		// no second use. The key signed the CSR, so only its holder
		// retries.
		repeated := false
		if !res.Reenrolled {
			usedBy, err := repeatedUse(ctx, q, tokenID, machineID, p.KeyHash)
			if err != nil {
				return err
			}
			if usedBy != "" {
				deviceID, repeated, res.Reenrolled, res.By = usedBy, true, true, "retry"
			}
		} else if usedBy, err := repeatedUse(ctx, q, tokenID, machineID, p.KeyHash); err != nil {
			return err
		} else {
			repeated = usedBy == deviceID
		}
		if !res.Reenrolled && machineID != "" {
			var other string
			err := queryRow(ctx, q, "SELECT id FROM devices WHERE machine_id = ?", machineID).Scan(&other)
			switch {
			case err == nil:
				res.CloneOf = other
			case !errors.Is(err, errNoRows):
				return fmt.Errorf("enrol: find machine: %w", err)
			}
		}
		if deviceID == "" {
			return errors.New("enrol: no device ID for a new device")
		}
		if !repeated && tokenErr != nil {
			return tokenErr
		}
		if repeated {
			store.AuditField(ctx, "retry", "same-key")
		}
		if res.By == "key" || res.By == "ek" {
			store.AuditField(ctx, "proof", res.By)
		}
		if res.CloneOf != "" {
			store.AuditField(ctx, "possible_clone_of", res.CloneOf)
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
			// The record, controls, history, revocation and clone flag
			// stay (a revoked device never gets here: see above).
			_, err = q.Exec(ctx, `UPDATE devices SET facts = ?, hostname = ?, os = ?, agent_version = ?, enrolled_at = ?, cert_serial = ?,
				prev_cert_serial = NULL,
				ek_fingerprint = COALESCE(?, ek_fingerprint), key_attested = ?,
				device_group = CASE WHEN ? = '' THEN device_group ELSE ? END
				WHERE id = ? AND revoked_at IS NULL`, facts, p.Facts.GetHostname(), p.Facts.GetOs(), p.Facts.GetAgentVersion(), now, serial,
				nullString(p.EKFingerprint), p.KeyAttested, group, group, deviceID)
			if err == nil && res.By != "retry" && machineID != "" {
				// The same device (its key or its TPM) with a new machine
				// ID: the machine was re-imaged. The proof names the device.
				_, err = q.Exec(ctx, "UPDATE devices SET machine_id = ? WHERE id = ? AND clone_of IS NULL", machineID, deviceID)
				if s.d.IsUnique(err) {
					return fmt.Errorf("enrol %s: machine ID %s belongs to another device: %w", deviceID, machineID, store.ErrConflict)
				}
			}
		} else {
			// A clone keeps no machine ID of its own until approved: the
			// claimed one stays with the device that has it.
			mid := nullString(machineID)
			if res.CloneOf != "" {
				mid = nil
			}
			_, err = q.Exec(ctx, `INSERT INTO devices (id, machine_id, hostname, os, agent_version, facts, enrolled_at, cert_serial, verdict, ek_fingerprint, key_attested, device_group, clone_of)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, deviceID, mid, p.Facts.GetHostname(), p.Facts.GetOs(), p.Facts.GetAgentVersion(), facts, now, serial, store.VerdictNeverReported,
				nullString(p.EKFingerprint), p.KeyAttested, group, nullString(res.CloneOf))
			if s.d.IsUnique(err) {
				return fmt.Errorf("enrol %s: %w", deviceID, store.ErrConflict)
			}
		}
		if err != nil {
			return fmt.Errorf("enrol %s: store device: %w", deviceID, err)
		}
		res.Device, err = getDevice(ctx, q, deviceID)
		if err == nil && res.Device.CloneOf != "" && res.CloneOf == "" {
			res.CloneOf = res.Device.CloneOf
		}
		return err
	})
	if err != nil {
		return store.EnrollResult{}, err
	}
	return res, nil
}

// CheckToken reads a token: unknown, expired, or nil.
func (s *Store) CheckToken(ctx context.Context, hash []byte, now time.Time) error {
	var expires Time
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT expires_at FROM tokens WHERE hash = ?", hash).Scan(&expires)
	})
	switch {
	case errors.Is(err, errNoRows):
		return store.ErrTokenUnknown
	case err != nil:
		return fmt.Errorf("check token: %w", err)
	case !now.Before(expires.T):
		return store.ErrTokenExpired
	}
	return nil
}

// RecordEnrollFailure stores one enrolment refused for its token.
func (s *Store) RecordEnrollFailure(ctx context.Context, f store.EnrollFailure) error {
	err := s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, "INSERT INTO enroll_failures (source, at, reason) VALUES (?, ?, ?)", f.Source, f.At.UnixMicro(), f.Reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("record enrolment failure: %w", err)
	}
	return nil
}

// ApproveClone confirms a flagged record as the device it claimed to be.
func (s *Store) ApproveClone(ctx context.Context, id string, at time.Time) (approved, replaced store.Device, err error) {
	err = s.write(ctx, func(q Q) error {
		var other sql.NullString
		err := queryRow(ctx, q, "SELECT clone_of FROM devices WHERE id = ?"+s.d.ForUpdate(""), id).Scan(&other)
		switch {
		case errors.Is(err, errNoRows):
			return fmt.Errorf("device %s: %w", id, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("approve clone %s: %w", id, err)
		case !other.Valid || other.String == "":
			return fmt.Errorf("device %s: %w", id, store.ErrNotClone)
		}
		var mid sql.NullString
		var group string
		if err := queryRow(ctx, q, "SELECT machine_id, device_group FROM devices WHERE id = ?"+s.d.ForUpdate(""), other.String).Scan(&mid, &group); err != nil {
			return fmt.Errorf("approve clone %s: read %s: %w", id, other.String, err)
		}
		if _, err := q.Exec(ctx, `UPDATE devices SET revoked_at = ?, revoked_reason = ?, verdict = ?, failing_since = NULL
			WHERE id = ? AND revoked_at IS NULL`, s.d.Stamp(at), "replaced by "+id+" (re-enrolment approved)", store.VerdictRevoked, other.String); err != nil {
			return fmt.Errorf("approve clone %s: revoke %s: %w", id, other.String, err)
		}
		if _, err := q.Exec(ctx, "UPDATE devices SET machine_id = NULL WHERE id = ?", other.String); err != nil {
			return fmt.Errorf("approve clone %s: %w", id, err)
		}
		if _, err := q.Exec(ctx, `UPDATE devices SET clone_of = NULL, machine_id = ?,
			device_group = CASE WHEN device_group = '' THEN ? ELSE device_group END WHERE id = ?`, mid, group, id); err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("approve clone %s: %w", id, store.ErrConflict)
			}
			return fmt.Errorf("approve clone %s: %w", id, err)
		}
		if approved, err = getDevice(ctx, q, id); err != nil {
			return err
		}
		replaced, err = getDevice(ctx, q, other.String)
		return err
	})
	return approved, replaced, err
}

// ApproveEK adds an EK to the approved list; false when it was there.
func (s *Store) ApproveEK(ctx context.Context, e store.ApprovedEK) (bool, error) {
	var n int64
	err := s.write(ctx, func(q Q) error {
		var err error
		n, err = q.Exec(ctx, `INSERT INTO approved_eks (fingerprint, approved_by, approved_at, note) VALUES (?, ?, ?, ?)
			ON CONFLICT (fingerprint) DO NOTHING`, e.Fingerprint, e.ApprovedBy, e.ApprovedAt.UnixMicro(), e.Note)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("approve EK %s: %w", e.Fingerprint, err)
	}
	return n > 0, nil
}

// EKApproved reports whether fingerprint is on the approved list.
func (s *Store) EKApproved(ctx context.Context, fingerprint string) (bool, error) {
	var n int
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT count(*) FROM approved_eks WHERE fingerprint = ?", fingerprint).Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("EK approved %s: %w", fingerprint, err)
	}
	return n > 0, nil
}

// ListApprovedEKs lists the approved EKs, oldest first.
func (s *Store) ListApprovedEKs(ctx context.Context) ([]store.ApprovedEK, error) {
	out, err := list(ctx, s, func(r Rows) (store.ApprovedEK, error) {
		var e store.ApprovedEK
		var at Time
		err := r.Scan(&e.Fingerprint, &e.ApprovedBy, &at, &e.Note)
		e.ApprovedAt = at.T
		return e, err
	}, "SELECT fingerprint, approved_by, approved_at, note FROM approved_eks ORDER BY approved_at, fingerprint")
	if err != nil {
		return nil, fmt.Errorf("list approved EKs: %w", err)
	}
	return out, nil
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

// repeatedUse returns the device machineID enrolled with a use of
// tokenID and the same key, when that device is not revoked since (a
// revoked device's retry must not lift its revocation for free); "" when
// none.
func repeatedUse(ctx context.Context, q Q, tokenID, machineID string, keyHash []byte) (string, error) {
	if machineID == "" || len(keyHash) == 0 {
		return "", nil
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
		return "", nil
	case err != nil:
		return "", fmt.Errorf("enrol: read token use: %w", err)
	}
	if !bytes.Equal(stored, keyHash) || revoked {
		return "", nil
	}
	return usedBy, nil
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
