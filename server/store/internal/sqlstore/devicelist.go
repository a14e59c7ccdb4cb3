package sqlstore

// The device list (端末一覧): every device, filtered by derived state,
// group, failing control, OS and agent version, in one of a few orders,
// a page at a time with the total. Each order has an index of its own
// (migration 0016), so a page reads its rows in order instead of sorting
// the fleet.

import (
	"context"
	"fmt"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// MaxDevicePage bounds one page of the device list.
const MaxDevicePage = 1000

// ListDevicePage returns one page of the device list and the number of
// devices matching q.
func (s *Store) ListDevicePage(ctx context.Context, q store.DeviceQuery) ([]store.Device, int64, error) {
	var args bindings
	f := q.Filter
	f.AfterID, f.Limit = "", 0
	cond, err := s.deviceWhere(&args, f)
	if err != nil {
		return nil, 0, err
	}
	if q.NoGroup {
		if f.Group != "" {
			return nil, 0, fmt.Errorf("device list: a group and no group")
		}
		cond += " AND device_group = ''"
	}
	if q.Control != "" {
		cond += " AND id IN (SELECT device_id FROM control_states WHERE control = " + args.bind(q.Control) +
			fmt.Sprintf(" AND state IN (%d, %d))", mamoriv1.ControlState_CONTROL_STATE_DEGRADED, mamoriv1.ControlState_CONTROL_STATE_FAILED)
	}
	if q.OS != "" {
		cond += " AND os = " + args.bind(q.OS)
	}
	if q.AgentVersion != "" {
		cond += " AND agent_version = " + args.bind(q.AgentVersion)
	}
	// Ascending puts devices without a time first, descending last: the
	// order SQLite's indexes keep, said explicitly for PostgreSQL.
	dir, nulls := "ASC", "NULLS FIRST"
	if q.Desc {
		dir, nulls = "DESC", "NULLS LAST"
	}
	var order string
	switch q.Sort {
	case "", store.SortHostname:
		order = "hostname " + dir + ", id " + dir
	case store.SortLastSeen:
		order = "last_seen " + dir + " " + nulls + ", id " + dir
	case store.SortFailingSince:
		order = "failing_since " + dir + " " + nulls + ", id " + dir
	case store.SortGroup:
		order = "device_group " + dir + ", hostname " + dir + ", id " + dir
	default:
		return nil, 0, fmt.Errorf("device list: unknown order %q", q.Sort)
	}
	limit := codec.Limit(q.Limit)
	if limit > MaxDevicePage || q.Offset < 0 {
		return nil, 0, fmt.Errorf("device list: page of %d from %d", q.Limit, q.Offset)
	}
	countArgs := append([]any(nil), args...)
	sqlText := "SELECT " + deviceCols + " FROM devices WHERE " + cond + " ORDER BY " + order +
		" LIMIT " + args.bind(limit) + " OFFSET " + args.bind(q.Offset)
	var (
		ds    []store.Device
		total int64
	)
	err = s.read(ctx, func(tx Q) error {
		if err := queryRow(ctx, tx, "SELECT count(*) FROM devices WHERE "+cond, countArgs...).Scan(&total); err != nil {
			return err
		}
		var err error
		ds, err = query(ctx, tx, scanDevice, sqlText, args...)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("device list: %w", err)
	}
	return ds, total, nil
}

// DeviceFacets lists the values the device list's filters offer.
func (s *Store) DeviceFacets(ctx context.Context) (store.DeviceFacets, error) {
	var f store.DeviceFacets
	scan := func(r Rows) (string, error) {
		var v string
		return v, r.Scan(&v)
	}
	err := s.read(ctx, func(tx Q) error {
		for _, x := range []struct {
			dst *[]string
			sql string
		}{
			{&f.Groups, "SELECT DISTINCT device_group FROM devices WHERE device_group <> '' ORDER BY device_group"},
			{&f.OSes, "SELECT DISTINCT os FROM devices WHERE os <> '' ORDER BY os"},
			{&f.AgentVersions, "SELECT DISTINCT agent_version FROM devices WHERE agent_version <> '' ORDER BY agent_version"},
			{&f.Controls, "SELECT DISTINCT control FROM control_states ORDER BY control"},
		} {
			vs, err := query(ctx, tx, scan, x.sql)
			if err != nil {
				return err
			}
			*x.dst = vs
		}
		return nil
	})
	if err != nil {
		return store.DeviceFacets{}, fmt.Errorf("device facets: %w", err)
	}
	return f, nil
}
