package sqlstore

// The device list (端末一覧): every device, filtered by derived state,
// group, failing control, OS and agent version, in one of a few orders,
// a page at a time with the total. Each order has an index of its own
// (migration 0016), so a page reads its rows in order instead of sorting
// the fleet.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// order SQLite's indexes keep, said explicitly for PostgreSQL (whose
	// indexes are made NULLS FIRST, migration 0019). A page before a
	// cursor reads the reversed order and is turned round.
	if q.After != "" && q.Before != "" || (q.After != "" || q.Before != "") && q.Offset != 0 {
		return nil, 0, fmt.Errorf("device list: after, before and offset together")
	}
	desc := q.Desc != (q.Before != "")
	dir, nulls := "ASC", "NULLS FIRST"
	if desc {
		dir, nulls = "DESC", "NULLS LAST"
	}
	var order string
	var keys []string // the order's columns, the ID last
	switch q.Sort {
	case "", store.SortHostname:
		order, keys = "hostname "+dir+", id "+dir, []string{"hostname", "id"}
	case store.SortLastSeen:
		order, keys = "last_seen "+dir+" "+nulls+", id "+dir, []string{"last_seen", "id"}
	case store.SortFailingSince:
		order, keys = "failing_since "+dir+" "+nulls+", id "+dir, []string{"failing_since", "id"}
	case store.SortGroup:
		order, keys = "device_group "+dir+", hostname "+dir+", id "+dir, []string{"device_group", "hostname", "id"}
	default:
		return nil, 0, fmt.Errorf("device list: unknown order %q", q.Sort)
	}
	limit := codec.Limit(q.Limit)
	if limit > MaxDevicePage || q.Offset < 0 {
		return nil, 0, fmt.Errorf("device list: page of %d from %d", q.Limit, q.Offset)
	}
	countArgs := append([]any(nil), args...)
	cursor := q.After + q.Before
	var (
		ds    []store.Device
		total int64
	)
	err = s.read(ctx, func(tx Q) error {
		if err := queryRow(ctx, tx, "SELECT count(*) FROM devices WHERE "+cond, countArgs...).Scan(&total); err != nil {
			return err
		}
		pageCond, pageArgs := cond, append(bindings(nil), args...)
		if cursor != "" {
			// The cursor device's own values, read in the same snapshot.
			vals := make([]any, len(keys))
			ptrs := make([]any, len(keys))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			err := queryRow(ctx, tx, "SELECT "+strings.Join(keys, ", ")+" FROM devices WHERE id = ?", cursor).Scan(ptrs...)
			if errors.Is(err, errNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			pageCond += " AND " + keysetAfter(&pageArgs, keys, vals, desc)
		}
		sqlText := "SELECT " + deviceCols + " FROM devices WHERE " + pageCond + " ORDER BY " + order +
			" LIMIT " + pageArgs.bind(limit) + " OFFSET " + pageArgs.bind(q.Offset)
		var err error
		ds, err = query(ctx, tx, scanDevice, sqlText, pageArgs...)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("device list: %w", err)
	}
	if q.Before != "" {
		slices.Reverse(ds)
	}
	return ds, total, nil
}

// keysetAfter is the condition "the row comes after the cursor whose
// values are vals" in the order of keys (ascending with NULLs first, or
// descending with NULLs last; the last key, the ID, is never NULL). Row
// values compare the keys at once where no NULL is involved, so the
// order's index serves the range; a NULL cursor value or the NULL rows
// after a value are said separately.
func keysetAfter(args *bindings, keys []string, vals []any, desc bool) string {
	op := ">"
	if desc {
		op = "<"
	}
	// The first NULL value of the cursor (only a time key can be NULL,
	// and it is then the first key of a two-key order).
	if vals[0] == nil && len(keys) == 2 {
		if desc {
			return "(" + keys[0] + " IS NULL AND id " + op + " " + args.bind(vals[1]) + ")"
		}
		return "(" + keys[0] + " IS NOT NULL OR (" + keys[0] + " IS NULL AND id " + op + " " + args.bind(vals[1]) + "))"
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = args.bind(v)
	}
	c := "(" + strings.Join(keys, ", ") + ") " + op + " (" + strings.Join(ph, ", ") + ")"
	if desc && (keys[0] == "last_seen" || keys[0] == "failing_since") {
		// Descending, the NULL times come last: after every value.
		c = "(" + c + " OR " + keys[0] + " IS NULL)"
	}
	return c
}

// distinct is the query of the distinct non-empty values of column, in
// order, as a walk of the column's index — one probe per value — rather
// than a pass over every row (SELECT DISTINCT read all 100,000 devices and
// 300,000 control states on PostgreSQL, ~0.5 s a page; both backends
// answer this from the index that leads with column).
func distinct(table, column string) string {
	return `WITH RECURSIVE v(x) AS (
		SELECT min(` + column + `) FROM ` + table + ` WHERE ` + column + ` > ''
		UNION ALL
		SELECT (SELECT min(` + column + `) FROM ` + table + ` WHERE ` + column + ` > v.x) FROM v WHERE v.x IS NOT NULL
	) SELECT x FROM v WHERE x IS NOT NULL`
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
			{&f.Groups, distinct("devices", "device_group")},
			{&f.OSes, distinct("devices", "os")},
			{&f.AgentVersions, distinct("devices", "agent_version")},
			{&f.Controls, distinct("control_states", "control")},
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
