package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

func scanDevice(row pgx.Row) (store.Device, error) {
	var (
		d                                 store.Device
		facts, controls                   []byte
		reasons                           string
		enrolled                          time.Time
		lastSeen, failingSince, revokedAt *time.Time
		ek                                *string
	)
	if err := row.Scan(&d.ID, &facts, &enrolled, &d.CertSerial, &lastSeen, &d.Verdict, &reasons,
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
	if ek != nil {
		d.EKFingerprint = *ek
	}
	d.EnrolledAt = codec.Time(enrolled)
	d.LastSeen, d.FailingSince, d.RevokedAt = ts(lastSeen), ts(failingSince), ts(revokedAt)
	return d, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getDevice(ctx context.Context, q querier, id string) (store.Device, error) {
	d, err := scanDevice(q.QueryRow(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Device{}, fmt.Errorf("device %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return d, nil
}

func queryDevices(ctx context.Context, q querier, sql string, args ...any) ([]store.Device, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Device, error) { return scanDevice(r) })
}

// GetDevice returns one device by ID.
func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	return getDevice(ctx, s.pool, id)
}

// FindDevice looks a device up by ID, then by hostname.
func (s *Store) FindDevice(ctx context.Context, key string) (store.Device, error) {
	d, err := s.GetDevice(ctx, key)
	if !errors.Is(err, store.ErrNotFound) {
		return d, err
	}
	ds, err := queryDevices(ctx, s.pool, "SELECT "+deviceCols+" FROM devices WHERE hostname = $1 AND hostname <> '' ORDER BY id LIMIT 2", key)
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

// ListDevices returns a page of devices matching f, ordered by ID.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error) {
	a := sqlstore.Args{Dollar: true}
	cond, err := sqlstore.DeviceWhere(&a, f, cutTime)
	if err != nil {
		return nil, err
	}
	cols := deviceCols
	if f.WithoutControls {
		cols = deviceColsNoControls
	}
	q := "SELECT " + cols + " FROM devices WHERE " + cond + " ORDER BY id LIMIT " + a.Bind(codec.Limit(f.Limit))
	ds, err := queryDevices(ctx, s.pool, q, a.List...)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return ds, nil
}

// CountFleet counts devices by derived compliance in one pass over the
// (verdict, last_seen) index.
func (s *Store) CountFleet(ctx context.Context, cut store.OfflineCut) (store.FleetCounts, error) {
	a := sqlstore.Args{Dollar: true}
	rows, err := s.pool.Query(ctx, `SELECT verdict, count(*), count(*) FILTER (WHERE last_seen < `+sqlstore.CutExpr(&a, cut, cutTime)+`)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE devices SET revoked_at = $1, revoked_reason = $2,
			verdict = $3, failing_since = NULL WHERE id = $4 AND revoked_at IS NULL`,
			codec.Time(at), reason, store.VerdictRevoked, id); err != nil {
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
	rows, err := s.pool.Query(ctx, `SELECT device_id, control, from_state, to_state, detail, at, detail_msg
		FROM control_history WHERE device_id = $1 ORDER BY id DESC LIMIT $2`, deviceID, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.HistoryEntry, error) {
		var (
			h        store.HistoryEntry
			from, to int32
			at       time.Time
			msg      []byte
		)
		if err := r.Scan(&h.DeviceID, &h.Control, &from, &to, &h.Detail, &at, &msg); err != nil {
			return h, err
		}
		h.From, h.To, h.At = mamoriv1.ControlState(from), mamoriv1.ControlState(to), codec.Time(at)
		var err error
		h.DetailMsg, err = codec.ParseDetailMsg(msg)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
	}
	return hs, nil
}

// CountFleetByGroup counts devices by group and derived compliance in one
// pass over the (device_group, verdict, last_seen) index.
func (s *Store) CountFleetByGroup(ctx context.Context, cut store.OfflineCut) ([]store.GroupCounts, error) {
	a := sqlstore.Args{Dollar: true}
	rows, err := s.pool.Query(ctx, `SELECT device_group, verdict, count(*), count(*) FILTER (WHERE last_seen < `+sqlstore.CutExpr(&a, cut, cutTime)+`)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE devices SET device_group = $1 WHERE id = $2", group, id); err != nil {
			return fmt.Errorf("set group of device %s: %w", id, err)
		}
		var err error
		d, err = getDevice(ctx, tx, id)
		return err
	})
	return d, err
}

// cutTime binds an OFFLINE cut-off as a timestamptz; the zero time is the
// year 1, before every last_seen (nothing is OFFLINE).
func cutTime(t time.Time) any { return codec.Time(t) }
