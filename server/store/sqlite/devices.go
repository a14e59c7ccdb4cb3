package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

const deviceCols = `id, facts, enrolled_at, cert_serial, last_seen, verdict, reasons,
	failing_since, policy_version, controls, revoked_at, revoked_reason, ek_fingerprint, key_attested, device_group`

// deviceColsNoControls are deviceCols with an empty controls column
// (DeviceFilter.WithoutControls).
var deviceColsNoControls = strings.Replace(deviceCols, "controls,", "NULL AS controls,", 1)

type scanner interface{ Scan(dest ...any) error }

func scanDevice(sc scanner) (store.Device, error) {
	var (
		d                                 store.Device
		facts, controls                   []byte
		reasons                           string
		enrolled                          int64
		lastSeen, failingSince, revokedAt sql.NullInt64
		ek                                sql.NullString
	)
	if err := sc.Scan(&d.ID, &facts, &enrolled, &d.CertSerial, &lastSeen, &d.Verdict, &reasons,
		&failingSince, &d.PolicyVersion, &controls, &revokedAt, &d.RevokedReason, &ek, &d.KeyAttested, &d.Group); err != nil {
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
	d.EKFingerprint = ek.String
	d.EnrolledAt = codec.FromMicros(enrolled, true)
	d.LastSeen, d.FailingSince, d.RevokedAt = ts(lastSeen), ts(failingSince), ts(revokedAt)
	return d, nil
}

func getDevice(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (store.Device, error) {
	d, err := scanDevice(q.QueryRowContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Device{}, fmt.Errorf("device %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return d, nil
}

// GetDevice returns one device by ID.
func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	return getDevice(ctx, s.r, id)
}

// FindDevice looks a device up by ID, then by hostname.
func (s *Store) FindDevice(ctx context.Context, key string) (store.Device, error) {
	d, err := s.GetDevice(ctx, key)
	if !errors.Is(err, store.ErrNotFound) {
		return d, err
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE hostname = ? AND hostname <> '' ORDER BY id LIMIT 2", key)
	if err != nil {
		return store.Device{}, fmt.Errorf("find device %q: %w", key, err)
	}
	ds, err := scanDevices(rows)
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

func scanDevices(rows *sql.Rows) ([]store.Device, error) {
	defer rows.Close()
	var ds []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

// ListDevices returns a page of devices matching f, ordered by ID.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error) {
	var a sqlstore.Args
	cond, err := sqlstore.DeviceWhere(&a, f, cutMicros)
	if err != nil {
		return nil, err
	}
	cols := deviceCols
	if f.WithoutControls {
		cols = deviceColsNoControls
	}
	q := "SELECT " + cols + " FROM devices WHERE " + cond + " ORDER BY id LIMIT " + a.Bind(codec.Limit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q, a.List...)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	ds, err := scanDevices(rows)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return ds, nil
}

// CountFleet counts devices by derived compliance in one pass over the
// (verdict, last_seen) index.
func (s *Store) CountFleet(ctx context.Context, cut store.OfflineCut) (store.FleetCounts, error) {
	var a sqlstore.Args
	rows, err := s.r.QueryContext(ctx, `SELECT verdict, count(*), count(*) FILTER (WHERE last_seen < `+sqlstore.CutExpr(&a, cut, cutMicros)+`)
		FROM devices GROUP BY verdict`, a.List...)
	if err != nil {
		return store.FleetCounts{}, fmt.Errorf("count fleet: %w", err)
	}
	defer rows.Close()
	var c store.FleetCounts
	for rows.Next() {
		var (
			v           string
			n, nOffline int64
		)
		if err := rows.Scan(&v, &n, &nOffline); err != nil {
			return store.FleetCounts{}, fmt.Errorf("count fleet: %w", err)
		}
		if err := sqlstore.AddCount(&c, v, n, nOffline); err != nil {
			return store.FleetCounts{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return store.FleetCounts{}, fmt.Errorf("count fleet: %w", err)
	}
	return c, nil
}

// RevokeDevice marks a device revoked; its reports are refused from now on
// until it enrols again. Revoking a revoked device changes nothing.
func (s *Store) RevokeDevice(ctx context.Context, id, reason string, at time.Time) (store.Device, error) {
	if at.IsZero() {
		return store.Device{}, fmt.Errorf("revoke device %s: no revocation time", id)
	}
	var d store.Device
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ?, revoked_reason = ?,
			verdict = ?, failing_since = NULL WHERE id = ? AND revoked_at IS NULL`,
			codec.Micros(codec.Time(at)), reason, store.VerdictRevoked, id); err != nil {
			return fmt.Errorf("revoke device %s: %w", id, err)
		}
		var err error
		d, err = getDevice(ctx, tx, id)
		return err
	})
	return d, err
}

// ControlHistory returns a device's control state changes, newest first.
func (s *Store) ControlHistory(ctx context.Context, deviceID string, limit int) ([]store.HistoryEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT device_id, control, from_state, to_state, detail, at, detail_msg
		FROM control_history WHERE device_id = ? ORDER BY id DESC LIMIT ?`, deviceID, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
	}
	defer rows.Close()
	var hs []store.HistoryEntry
	for rows.Next() {
		var (
			h        store.HistoryEntry
			from, to int32
			at       int64
			msg      []byte
		)
		if err := rows.Scan(&h.DeviceID, &h.Control, &from, &to, &h.Detail, &at, &msg); err != nil {
			return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
		}
		h.From, h.To, h.At = mamoriv1.ControlState(from), mamoriv1.ControlState(to), codec.FromMicros(at, true)
		var err error
		if h.DetailMsg, err = codec.ParseDetailMsg(msg); err != nil {
			return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
	}
	return hs, nil
}

// CountFleetByGroup counts devices by group and derived compliance in one
// pass over the (device_group, verdict, last_seen) index.
func (s *Store) CountFleetByGroup(ctx context.Context, cut store.OfflineCut) ([]store.GroupCounts, error) {
	var a sqlstore.Args
	rows, err := s.r.QueryContext(ctx, `SELECT device_group, verdict, count(*), count(*) FILTER (WHERE last_seen < `+sqlstore.CutExpr(&a, cut, cutMicros)+`)
		FROM devices GROUP BY device_group, verdict ORDER BY device_group`, a.List...)
	if err != nil {
		return nil, fmt.Errorf("count fleet by group: %w", err)
	}
	defer rows.Close()
	var out []store.GroupCounts
	for rows.Next() {
		var (
			g, v        string
			n, nOffline int64
		)
		if err := rows.Scan(&g, &v, &n, &nOffline); err != nil {
			return nil, fmt.Errorf("count fleet by group: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Group != g {
			out = append(out, store.GroupCounts{Group: g})
		}
		if err := sqlstore.AddCount(&out[len(out)-1].FleetCounts, v, n, nOffline); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count fleet by group: %w", err)
	}
	return out, nil
}

// SetDeviceGroup moves a device to a group (” for none).
func (s *Store) SetDeviceGroup(ctx context.Context, id, group string) (store.Device, error) {
	var d store.Device
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE devices SET device_group = ? WHERE id = ?", group, id); err != nil {
			return fmt.Errorf("set group of device %s: %w", id, err)
		}
		var err error
		d, err = getDevice(ctx, tx, id)
		return err
	})
	return d, err
}

// cutMicros binds an OFFLINE cut-off: the zero time as the earliest
// instant, before every last_seen (nothing is OFFLINE).
func cutMicros(t time.Time) any {
	if t.IsZero() {
		return int64(-1 << 63)
	}
	return t.UnixMicro()
}
