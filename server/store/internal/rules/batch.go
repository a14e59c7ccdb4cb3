package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/wire"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// DeviceIDs returns the distinct device IDs of a batch, sorted (so
// backends that lock rows lock them in one order and cannot deadlock).
func DeviceIDs(in []store.ReportInput) []string {
	ids := make([]string, 0, len(in))
	for _, r := range in {
		ids = append(ids, r.DeviceID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Update is the new content of one device row after a batch.
type Update struct {
	ID            string
	LastSeen      time.Time
	Verdict       string
	Reasons       string // codec.Reasons
	FailingSince  time.Time
	PolicyVersion int64
	Controls      []byte // codec.Controls
	// Facts is nil when no report in the batch carried facts: keep them.
	Facts    []byte
	Hostname string // meaningful only when Facts is set
}

// Event is one event to insert; Report is its index in the batch.
type Event struct {
	Report     int
	DeviceID   string
	EventID    string
	ReceivedAt time.Time
	// Kind is the event's kind, stored in its own column (the evidence
	// report selects the file log's records by it).
	Kind string
	Blob []byte
}

// Batch is what a batch of reports writes.
type Batch struct {
	Results []store.ReportResult
	Updates []Update // in device ID order
	History []store.HistoryEntry
	// Events are the batch's events without duplicates inside the batch;
	// the backend inserts them ignoring ones already stored and calls
	// Inserted for each one it did store.
	Events []Event
	// Audit are the batch's compliance changes, one hash-chained audit
	// record per device verdict that changed, for the backend to append
	// in the batch's transaction (see VerdictAudit).
	Audit []store.AuditRecord
	owner map[eventKey]int
}

// maxVerdictDetail bounds a compliance change's audit detail; the reasons
// come from the report and the full list stays on the device row.
const maxVerdictDetail = 1000

// VerdictAudit is the audit record of a device's verdict changing from
// from to the verdict and reasons of in: the audit log holds every
// compliance change, with the device as actor (its report caused it).
func VerdictAudit(deviceID, from string, in store.ReportInput) store.AuditRecord {
	d := from + " → " + in.Verdict
	if len(in.Reasons) > 0 {
		d += " reasons=" + strings.Join(in.Reasons, "; ")
	}
	return store.AuditRecord{At: codec.Time(in.ReceivedAt), Actor: "device:" + deviceID, Action: "compliance.change",
		Target: deviceID, Detail: wire.Clamp(d, maxVerdictDetail)}
}

type eventKey struct{ device, event string }

// Plan applies every report of a batch, in order, to the loaded states
// (states holds every known device of DeviceIDs(in); a missing one is
// ErrNotFound). Two reports of one device in a batch apply one after the
// other. A refused report writes nothing.
func Plan(in []store.ReportInput, states map[string]*State) (*Batch, error) {
	b := &Batch{Results: make([]store.ReportResult, len(in)), owner: make(map[eventKey]int)}
	dirty := make(map[string]bool)
	for i, r := range in {
		s := states[r.DeviceID]
		if s == nil {
			b.Results[i].Err = fmt.Errorf("device %s: %w", r.DeviceID, store.ErrNotFound)
			continue
		}
		from := s.Verdict
		h, err := Apply(s, r)
		if err != nil {
			b.Results[i].Err = err
			continue
		}
		if s.Verdict != from {
			b.Audit = append(b.Audit, VerdictAudit(s.ID, from, r))
		}
		dirty[s.ID] = true
		b.History = append(b.History, h...)
		b.Results[i].Changes = ChangedControls(h)
		at := codec.Time(r.ReceivedAt)
		for j, e := range r.Events {
			if e == nil {
				continue
			}
			k := eventKey{r.DeviceID, e.GetId()}
			if _, dup := b.owner[k]; dup {
				continue
			}
			blob, err := r.EncodedEvent(j)
			if err != nil {
				return nil, fmt.Errorf("report of %s: %w", r.DeviceID, err)
			}
			b.owner[k] = i
			b.Events = append(b.Events, Event{Report: i, DeviceID: r.DeviceID, EventID: e.GetId(), ReceivedAt: at, Kind: e.GetKind(), Blob: blob})
		}
	}
	for _, id := range DeviceIDs(in) {
		if !dirty[id] {
			continue
		}
		s := states[id]
		u := Update{
			ID: id, LastSeen: s.LastSeen, Verdict: s.Verdict, Reasons: codec.Reasons(s.Reasons),
			FailingSince: s.FailingSince, PolicyVersion: s.PolicyVersion,
		}
		u.Controls = codec.AppendRawControls(nil, s.Controls)
		var err error
		if s.Facts != nil {
			if u.Facts, err = codec.Marshal(s.Facts); err != nil {
				return nil, fmt.Errorf("device %s: %w", id, err)
			}
			if u.Facts == nil {
				u.Facts = []byte{} // empty facts replace stored ones
			}
			u.Hostname = s.Facts.GetHostname()
		}
		b.Updates = append(b.Updates, u)
	}
	return b, nil
}

// Inserted records that the event (deviceID, eventID) was new.
func (b *Batch) Inserted(deviceID, eventID string) {
	if i, ok := b.owner[eventKey{deviceID, eventID}]; ok {
		b.Results[i].NewEvents++
	}
}
