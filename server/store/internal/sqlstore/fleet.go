package sqlstore

// The device filter and the OFFLINE cut-off as SQL, and the fleet counts.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Args collects query arguments; Bind adds one and returns its placeholder.
type Args struct {
	// Dollar selects $1, $2… (PostgreSQL) instead of ?.
	Dollar bool
	List   []any
}

// Bind appends v and returns its placeholder.
func (a *Args) Bind(v any) string {
	a.List = append(a.List, v)
	if a.Dollar {
		return fmt.Sprintf("$%d", len(a.List))
	}
	return "?"
}

// DeviceWhere returns the condition (for WHERE) that selects f's devices.
// tm converts a time to the column's type. OFFLINE is derived: a device
// with a report verdict last seen before f.OfflineBefore; with a zero
// OfflineBefore nothing is offline.
func DeviceWhere(a *Args, f store.DeviceFilter, tm func(time.Time) any) (string, error) {
	cond := "TRUE"
	seen := func(op string) string {
		if f.OfflineBefore.IsZero() && len(f.GroupOfflineBefore) == 0 {
			if op == "<" {
				return " AND FALSE"
			}
			return ""
		}
		return " AND last_seen " + op + " " + CutExpr(a, store.OfflineCut{Default: f.OfflineBefore, Groups: f.GroupOfflineBefore}, tm)
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
		cond += " AND device_group = " + a.Bind(f.Group)
	}
	if f.AfterID != "" {
		cond += " AND id > " + a.Bind(f.AfterID)
	}
	return cond, nil
}

// CutExpr is the SQL expression of a device's OFFLINE cut-off: a
// placeholder for c.Default, or a CASE on device_group when groups have
// their own (in a stable order, so equal cuts make equal SQL). A zero time
// binds as the earliest time, before every last_seen: nothing OFFLINE.
func CutExpr(a *Args, c store.OfflineCut, tm func(time.Time) any) string {
	// PostgreSQL cannot infer a CASE's type from placeholders alone.
	cast := ""
	if a.Dollar {
		cast = "::timestamptz"
	}
	if len(c.Groups) == 0 {
		return a.Bind(tm(c.Default))
	}
	groups := make([]string, 0, len(c.Groups))
	for g := range c.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var b strings.Builder
	b.WriteString("(CASE device_group")
	for _, g := range groups {
		b.WriteString(" WHEN " + a.Bind(g) + " THEN " + a.Bind(tm(c.Groups[g])) + cast)
	}
	b.WriteString(" ELSE " + a.Bind(tm(c.Default)) + cast + " END)")
	return b.String()
}

// AddCount adds n devices with verdict, offline of them last seen before
// the cut-off, to c.
func AddCount(c *store.FleetCounts, verdict string, n, offline int64) error {
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
		return fmt.Errorf("count fleet: %d devices have unknown verdict %q", n, verdict)
	}
	return nil
}
