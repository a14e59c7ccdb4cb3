package ledger

import (
	"context"
	"slices"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// States of a ledger row.
const (
	StateNeverEnrolled = "never_enrolled" // in the ledger, no device has its host name
	StateEnrolled      = "enrolled"       // enrolled and reporting
	StateOffline       = "offline"        // enrolled, stopped reporting (OFFLINE) or never reported
	StateRevoked       = "revoked"        // enrolled, then revoked
	StateNotInLedger   = "not_in_ledger"  // enrolled, the ledger does not know it
)

// Row is one ledger entry, or one enrolled device the ledger lacks, with
// its state.
type Row struct {
	Entry      store.LedgerEntry // empty for StateNotInLedger but Hostname/Group
	State      string
	DeviceID   string
	Compliance mamoriv1.Compliance
}

// Match pairs ledger entries with devices: by hardware serial number when
// the entry has one and a device reports it (DeviceFacts.serial_number,
// SMBIOS on Linux; a serial survives renaming and re-imaging), else by
// host name (both case-insensitive). state gives a device's derived state.
// Ledger rows come first in ledger order, then the devices the ledger
// lacks, by host name.
func Match(entries []store.LedgerEntry, devices []store.Device, state func(store.Device) mamoriv1.Compliance) []Row {
	// Indexes into devices, not copies: a fleet has 100,000 of them.
	byHost := make(map[string][]int, len(devices))
	bySerial := make(map[string][]int, len(devices))
	for i, d := range devices {
		k := strings.ToLower(d.Facts.GetHostname())
		byHost[k] = append(byHost[k], i)
		if sn := strings.ToLower(strings.TrimSpace(d.Facts.GetSerialNumber())); sn != "" {
			bySerial[sn] = append(bySerial[sn], i)
		}
	}
	used := map[string]bool{}
	out := make([]Row, 0, len(entries))
	for _, e := range entries {
		r := Row{Entry: e, State: StateNeverEnrolled}
		var ds []int
		if sn := strings.ToLower(strings.TrimSpace(e.Serial)); sn != "" {
			ds = bySerial[sn]
		}
		if len(ds) == 0 && e.Hostname != "" {
			ds = byHost[strings.ToLower(e.Hostname)]
		}
		if len(ds) > 0 {
			// Several records with one host name (re-imaged terminals):
			// the one seen last speaks for it.
			d := &devices[slices.MaxFunc(ds, func(a, b int) int { return devices[a].LastSeen.Compare(devices[b].LastSeen) })]
			for _, x := range ds {
				used[devices[x].ID] = true
			}
			r.DeviceID = d.ID
			r.Compliance = state(*d)
			switch r.Compliance {
			case mamoriv1.Compliance_COMPLIANCE_REVOKED:
				r.State = StateRevoked
			case mamoriv1.Compliance_COMPLIANCE_OFFLINE, mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED:
				r.State = StateOffline
			default:
				r.State = StateEnrolled
			}
		}
		out = append(out, r)
	}
	extra := make([]Row, 0, max(0, len(devices)-len(used)))
	for i := range devices {
		d := &devices[i]
		if used[d.ID] {
			continue
		}
		c := state(*d)
		if c == mamoriv1.Compliance_COMPLIANCE_REVOKED {
			continue // retired on purpose; not a finding
		}
		extra = append(extra, Row{Entry: store.LedgerEntry{Hostname: d.Facts.GetHostname(), Group: d.Group},
			State: StateNotInLedger, DeviceID: d.ID, Compliance: c})
	}
	slices.SortFunc(extra, func(a, b Row) int { return strings.Compare(a.Entry.Hostname, b.Entry.Hostname) })
	return append(out, extra...)
}

// Reader is what Rows reads.
type Reader interface {
	Ledger(ctx context.Context) (store.LedgerImport, error)
	ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error)
}

// Rows reads the ledger and every device (in pages of pageSize) and
// matches them; states are derived with p at now.
func Rows(ctx context.Context, st Reader, p *mamoriv1.Policy, now time.Time, pageSize int) ([]Row, store.LedgerImport, error) {
	l, err := st.Ledger(ctx)
	if err != nil {
		return nil, l, err
	}
	var devs []store.Device
	after := ""
	for {
		page, err := st.ListDevices(ctx, compliance.OfflineCut(p, now).Filter(store.DeviceFilter{AfterID: after, Limit: pageSize, WithoutControls: true}))
		if err != nil {
			return nil, l, err
		}
		devs = append(devs, page...)
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	rows := Match(l.Entries, devs, func(d store.Device) mamoriv1.Compliance {
		c, _ := compliance.State(d, p, now)
		return c
	})
	return rows, l, nil
}
