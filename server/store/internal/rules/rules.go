// Package rules holds the decisions every backend makes the same way:
// applying a report to a device's stored state and checking an enrolment
// token. The backends only load rows, call these and write the outcome.
package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// State is the part of a device row that a report reads or changes.
type State struct {
	ID            string
	MachineID     string // fixed at enrolment; "" when enrolled without one
	CertSerial    string
	RevokedAt     time.Time
	Verdict       string
	Reasons       []string
	FailingSince  time.Time
	LastSeen      time.Time
	PolicyVersion int64
	// Facts is nil unless a report replaced them.
	Facts    *mamoriv1.DeviceFacts
	Controls []*mamoriv1.ControlRecord
}

// Apply checks in against s and, when it is accepted, changes s as the
// report says and returns the history entries to write. A refused report
// leaves s unchanged.
//
// Controls missing from the report keep their stored record: a report that
// carries only events must not wipe the snapshot.
func Apply(s *State, in store.ReportInput) ([]store.HistoryEntry, error) {
	switch {
	case !s.RevokedAt.IsZero():
		return nil, store.ErrDeviceRevoked
	case in.CertSerial != s.CertSerial:
		return nil, store.ErrCertSuperseded
	case in.Facts != nil && in.Facts.MachineId != "" && in.Facts.MachineId != s.MachineID:
		// The certificate decides the device; facts naming another
		// machine are a copied identity or a forged report.
		return nil, store.ErrWrongDevice
	case in.Verdict != store.VerdictCompliant && in.Verdict != store.VerdictNoncompliant:
		return nil, fmt.Errorf("report verdict %q: want %s or %s", in.Verdict, store.VerdictCompliant, store.VerdictNoncompliant)
	}
	at := codec.Time(in.ReceivedAt)
	controls, changes := Merge(s.ID, s.Controls, in.Statuses, at)
	s.Controls = controls
	s.LastSeen = at
	s.PolicyVersion = in.PolicyVersion
	if in.Facts != nil {
		s.Facts = in.Facts
	}
	if in.Verdict == store.VerdictNoncompliant {
		if s.Verdict != store.VerdictNoncompliant || s.FailingSince.IsZero() {
			s.FailingSince = at
		}
	} else {
		s.FailingSince = time.Time{}
	}
	s.Verdict = in.Verdict
	s.Reasons = slices.Clone(in.Reasons)
	return changes, nil
}

// Merge folds statuses into the stored records (ordered by control name)
// and returns the new records, ordered by name, and one history entry per
// control whose state changed. A control seen for the first time changes
// from UNSPECIFIED. Since is kept while the state is unchanged and set to
// at when it changes. When a report names a control twice the last wins.
func Merge(deviceID string, old []*mamoriv1.ControlRecord, statuses []*mamoriv1.ControlStatus, at time.Time) ([]*mamoriv1.ControlRecord, []store.HistoryEntry) {
	byName := make(map[string]*mamoriv1.ControlRecord, len(old)+len(statuses))
	for _, r := range old {
		byName[r.GetStatus().GetControl()] = r
	}
	latest := make(map[string]*mamoriv1.ControlStatus, len(statuses))
	for _, st := range statuses {
		if st != nil {
			latest[st.GetControl()] = st
		}
	}
	prev := make(map[string]mamoriv1.ControlState, len(latest))
	for name, st := range latest {
		r, ok := byName[name]
		prev[name] = r.GetStatus().GetState() // UNSPECIFIED when new
		// The record shares st with the caller; it is only read (encoded).
		if ok && r.GetStatus().GetState() == st.GetState() {
			byName[name] = &mamoriv1.ControlRecord{Status: st, Since: r.GetSince()}
			continue
		}
		byName[name] = &mamoriv1.ControlRecord{Status: st, Since: timestamppb.New(at)}
	}
	recs := make([]*mamoriv1.ControlRecord, 0, len(byName))
	for _, r := range byName {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *mamoriv1.ControlRecord) int {
		return strings.Compare(a.GetStatus().GetControl(), b.GetStatus().GetControl())
	})
	var changes []store.HistoryEntry
	for _, r := range recs {
		from, reported := prev[r.GetStatus().GetControl()]
		if !reported || from == r.GetStatus().GetState() {
			continue
		}
		changes = append(changes, store.HistoryEntry{
			DeviceID: deviceID,
			Control:  r.GetStatus().GetControl(),
			From:     from,
			To:       r.GetStatus().GetState(),
			Detail:   r.GetStatus().GetDetail(),
			At:       at,
		})
	}
	return recs, changes
}

// ChangedControls lists the controls of h, for ReportResult.Changes.
func ChangedControls(h []store.HistoryEntry) []string {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, len(h))
	for i, e := range h {
		names[i] = e.Control
	}
	return names
}

// CheckToken decides whether a token with these values allows one more
// enrolment at now.
func CheckToken(now, expires time.Time, uses, used int) error {
	if !codec.Time(now).Before(codec.Time(expires)) {
		return store.ErrTokenExpired
	}
	if used >= uses {
		return store.ErrTokenUsedUp
	}
	return nil
}
