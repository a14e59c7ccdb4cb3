package sqlstore

// The fleet as a whole: pages of devices by derived compliance and the
// summary counts. OFFLINE is never stored; it is derived from last_seen
// and a cut-off (store.OfflineCut) in the SQL.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// bindings collects a statement's arguments while its text is built.
type bindings []any

// bind appends v and returns its placeholder.
func (b *bindings) bind(v any) string {
	*b = append(*b, v)
	return "?"
}

// ListDevices returns a page of devices matching f, ordered by ID.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error) {
	var args bindings
	cond, err := s.deviceWhere(&args, f)
	if err != nil {
		return nil, err
	}
	cols := deviceCols
	if f.WithoutControls {
		cols = deviceColsNoControls
	}
	sqlText := "SELECT " + cols + " FROM devices WHERE " + cond + " ORDER BY id LIMIT " + args.bind(codec.Limit(f.Limit))
	ds, err := list(ctx, s, scanDevice, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return ds, nil
}

// CountFleet counts devices by derived compliance in one pass over the
// (verdict, last_seen) index.
func (s *Store) CountFleet(ctx context.Context, cut store.OfflineCut) (store.FleetCounts, error) {
	var args bindings
	sqlText := `SELECT verdict, count(*), count(*) FILTER (WHERE last_seen < ` + s.cutExpr(&args, cut) + `)
		FROM devices GROUP BY verdict`
	var c store.FleetCounts
	err := s.read(ctx, func(q Q) error {
		_, err := query(ctx, q, func(r Rows) (struct{}, error) {
			var (
				v           string
				n, nOffline int64
			)
			if err := r.Scan(&v, &n, &nOffline); err != nil {
				return struct{}{}, err
			}
			return struct{}{}, addCount(&c, v, n, nOffline)
		}, sqlText, args...)
		return err
	})
	if err != nil {
		return store.FleetCounts{}, fmt.Errorf("count fleet: %w", err)
	}
	return c, nil
}

// CountFleetByGroup counts devices by group and derived compliance in one
// pass over the (device_group, verdict, last_seen) index.
func (s *Store) CountFleetByGroup(ctx context.Context, cut store.OfflineCut) ([]store.GroupCounts, error) {
	var args bindings
	sqlText := `SELECT device_group, verdict, count(*), count(*) FILTER (WHERE last_seen < ` + s.cutExpr(&args, cut) + `)
		FROM devices GROUP BY device_group, verdict ORDER BY device_group`
	var out []store.GroupCounts
	err := s.read(ctx, func(q Q) error {
		_, err := query(ctx, q, func(r Rows) (struct{}, error) {
			var (
				g, v        string
				n, nOffline int64
			)
			if err := r.Scan(&g, &v, &n, &nOffline); err != nil {
				return struct{}{}, err
			}
			if len(out) == 0 || out[len(out)-1].Group != g {
				out = append(out, store.GroupCounts{Group: g})
			}
			return struct{}{}, addCount(&out[len(out)-1].FleetCounts, v, n, nOffline)
		}, sqlText, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count fleet by group: %w", err)
	}
	return out, nil
}

// deviceWhere returns the condition (for WHERE) that selects f's devices.
// OFFLINE is derived: a device with a report verdict last seen before
// f.OfflineBefore; with a zero OfflineBefore nothing is offline.
func (s *Store) deviceWhere(args *bindings, f store.DeviceFilter) (string, error) {
	cond := "TRUE"
	seen := func(op string) string {
		if f.OfflineBefore.IsZero() && len(f.GroupOfflineBefore) == 0 {
			if op == "<" {
				return " AND FALSE"
			}
			return ""
		}
		return " AND last_seen " + op + " " + s.cutExpr(args, store.OfflineCut{Default: f.OfflineBefore, Groups: f.GroupOfflineBefore})
	}
	switch f.Compliance {
	case mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED:
	case mamoriv1.Compliance_COMPLIANCE_COMPLIANT:
		cond = "verdict = '" + store.VerdictCompliant + "'" + seen(">=")
	case mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT:
		cond = "verdict = '" + store.VerdictNoncompliant + "'" + seen(">=")
	case mamoriv1.Compliance_COMPLIANCE_OFFLINE:
		cond = "verdict IN ('" + store.VerdictCompliant + "', '" + store.VerdictNoncompliant + "')" + seen("<")
	case mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED:
		cond = "verdict = '" + store.VerdictNeverReported + "'"
	case mamoriv1.Compliance_COMPLIANCE_REVOKED:
		cond = "verdict = '" + store.VerdictRevoked + "'"
	default:
		return "", fmt.Errorf("device filter: unknown compliance %v", f.Compliance)
	}
	if f.Group != "" {
		cond += " AND device_group = " + args.bind(f.Group)
	}
	if f.AfterID != "" {
		cond += " AND id > " + args.bind(f.AfterID)
	}
	return cond, nil
}

// cutExpr is the SQL expression of a device's OFFLINE cut-off: a
// placeholder for c.Default, or a CASE on device_group when groups have
// their own (in a stable order, so equal cuts make equal SQL). A zero time
// binds as the year 1, before every last_seen: nothing OFFLINE.
func (s *Store) cutExpr(args *bindings, c store.OfflineCut) string {
	if len(c.Groups) == 0 {
		return args.bind(s.d.Stamp(c.Default))
	}
	groups := make([]string, 0, len(c.Groups))
	for g := range c.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	cast := s.d.TimeCast()
	var b strings.Builder
	b.WriteString("(CASE device_group")
	for _, g := range groups {
		b.WriteString(" WHEN " + args.bind(g) + " THEN " + args.bind(s.d.Stamp(c.Groups[g])) + cast)
	}
	b.WriteString(" ELSE " + args.bind(s.d.Stamp(c.Default)) + cast + " END)")
	return b.String()
}

// addCount adds n devices with verdict, offline of them last seen before
// the cut-off, to c.
func addCount(c *store.FleetCounts, verdict string, n, offline int64) error {
	c.Total += n
	switch verdict {
	case store.VerdictCompliant:
		c.Compliant += n - offline
		c.Offline += offline
	case store.VerdictNoncompliant:
		c.Noncompliant += n - offline
		c.Offline += offline
	case store.VerdictNeverReported:
		c.NeverReported += n
	case store.VerdictRevoked:
		c.Revoked += n
	default:
		return fmt.Errorf("%d devices have unknown verdict %q", n, verdict)
	}
	return nil
}
