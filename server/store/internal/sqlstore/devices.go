package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

const deviceCols = `id, facts, enrolled_at, cert_serial, last_seen, verdict, reasons,
	failing_since, policy_version, controls, revoked_at, revoked_reason, ek_fingerprint, key_attested, device_group, clone_of,
	state_digest, verdict_policy`

// deviceColsNoControls are deviceCols with an empty controls column
// (DeviceFilter.WithoutControls).
var deviceColsNoControls = strings.Replace(deviceCols, "controls,", "NULL AS controls,", 1)

func scanDevice(r Rows) (store.Device, error) { return scanDeviceRow(r) }

func scanDeviceRow(r interface{ Scan(dest ...any) error }) (store.Device, error) {
	var (
		d                                           store.Device
		facts, controls                             []byte
		reasons                                     string
		enrolled, lastSeen, failingSince, revokedAt Time
		ek, cloneOf                                 sql.NullString
	)
	if err := r.Scan(&d.ID, &facts, &enrolled, &d.CertSerial, &lastSeen, &d.Verdict, &reasons,
		&failingSince, &d.PolicyVersion, &controls, &revokedAt, &d.RevokedReason, &ek, &d.KeyAttested, &d.Group, &cloneOf,
		&d.StateDigest, &d.VerdictPolicy); err != nil {
		return store.Device{}, err
	}
	var err error
	if d.Facts, err = codec.Facts(facts); err != nil {
		return store.Device{}, fmt.Errorf("device %s: %w", d.ID, err)
	}
	if d.Controls, err = codec.ParseControls(controls); err != nil {
		return store.Device{}, fmt.Errorf("device %s: %w", d.ID, err)
	}
	if d.Reasons, err = codec.ParseReasons(reasons); err != nil {
		return store.Device{}, fmt.Errorf("device %s: %w", d.ID, err)
	}
	d.EKFingerprint, d.CloneOf = ek.String, cloneOf.String
	d.EnrolledAt, d.LastSeen, d.FailingSince, d.RevokedAt = enrolled.T, lastSeen.T, failingSince.T, revokedAt.T
	return d, nil
}

func getDevice(ctx context.Context, q Q, id string) (store.Device, error) {
	d, err := scanDeviceRow(queryRow(ctx, q, "SELECT "+deviceCols+" FROM devices WHERE id = ?", id))
	if errors.Is(err, errNoRows) {
		return store.Device{}, fmt.Errorf("device %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return d, nil
}

// GetDevice returns one device by ID.
func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	var d store.Device
	err := s.read(ctx, func(q Q) error {
		var err error
		d, err = getDevice(ctx, q, id)
		return err
	})
	return d, err
}

// FindDevice looks a device up by ID, then by hostname.
func (s *Store) FindDevice(ctx context.Context, key string) (store.Device, error) {
	d, err := s.GetDevice(ctx, key)
	if !errors.Is(err, store.ErrNotFound) {
		return d, err
	}
	ds, err := list(ctx, s, scanDevice, "SELECT "+deviceCols+" FROM devices WHERE hostname = ? AND hostname <> '' ORDER BY id LIMIT 2", key)
	if err != nil {
		return store.Device{}, fmt.Errorf("find device %q: %w", key, err)
	}
	switch len(ds) {
	case 0:
		return store.Device{}, fmt.Errorf("device %q: %w", key, store.ErrNotFound)
	case 1:
		return ds[0], nil
	}
	return store.Device{}, fmt.Errorf("hostname %q: %w", key, store.ErrAmbiguous)
}

// SearchDevices finds devices by hostname prefix on the hostname index
// (on PostgreSQL with collation "C", so the range is byte-wise as in
// SQLite).
func (s *Store) SearchDevices(ctx context.Context, prefix string, limit int) ([]store.Device, error) {
	ds, err := list(ctx, s, scanDevice, "SELECT "+deviceCols+` FROM devices
		WHERE hostname >= ? AND hostname < ? AND hostname <> '' ORDER BY hostname, id LIMIT ?`,
		prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	return ds, nil
}

// DeviceGroup is the group of one device.
func (s *Store) DeviceGroup(ctx context.Context, deviceID string) (string, error) {
	var g string
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT device_group FROM devices WHERE id = ?", deviceID).Scan(&g)
	})
	if errors.Is(err, errNoRows) {
		return "", fmt.Errorf("device %s: %w", deviceID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("group of device %s: %w", deviceID, err)
	}
	return g, nil
}

// RevokeDevice marks a device revoked; its reports are refused from now on
// until it enrols again. Revoking a revoked device changes nothing.
func (s *Store) RevokeDevice(ctx context.Context, id, reason string, at time.Time) (store.Device, error) {
	if at.IsZero() {
		return store.Device{}, fmt.Errorf("revoke device %s: no revocation time", id)
	}
	var d store.Device
	err := s.write(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, `UPDATE devices SET revoked_at = ?, revoked_reason = ?,
			verdict = ?, failing_since = NULL WHERE id = ? AND revoked_at IS NULL`,
			s.d.Stamp(at), reason, store.VerdictRevoked, id); err != nil {
			return fmt.Errorf("revoke device %s: %w", id, err)
		}
		var err error
		d, err = getDevice(ctx, q, id)
		return err
	})
	return d, err
}

// SetDeviceGroup moves a device to a group ("" for none).
func (s *Store) SetDeviceGroup(ctx context.Context, id, group string) (store.Device, error) {
	var d store.Device
	err := s.write(ctx, func(q Q) error {
		if _, err := q.Exec(ctx, "UPDATE devices SET device_group = ? WHERE id = ?", group, id); err != nil {
			return fmt.Errorf("set group of device %s: %w", id, err)
		}
		var err error
		d, err = getDevice(ctx, q, id)
		return err
	})
	return d, err
}
