// Package rules holds the decisions every backend makes the same way:
// applying a report to a device's stored state and checking an enrolment
// token. The backends only load rows, call these and write the outcome.
package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// State is the part of a device row that a report reads or changes.
type State struct {
	ID         string
	MachineID  string // fixed at enrolment; "" when enrolled without one
	CertSerial string
	// PrevSerial is the certificate the device renewed from last; it is
	// accepted as well as CertSerial ("" when none).
	PrevSerial    string
	RevokedAt     time.Time
	Verdict       string
	Reasons       []string
	FailingSince  time.Time
	LastSeen      time.Time
	PolicyVersion int64
	// Facts is nil unless a report replaced them.
	Facts *mamoriv1.DeviceFacts
	// Controls is the control snapshot, ordered by control name, decoded
	// only as far as merging needs (codec.ParseRawControls).
	Controls []codec.RawControl
	// StateDigest and VerdictPolicy: store.Device's fields of the same
	// names.
	StateDigest, VerdictPolicy string
}

// errNeedFull is what Apply returns for a delta whose base is not the
// stored state: the caller stores the report's events and facts and
// last_seen, and asks for a full report.
var errNeedFull = fmt.Errorf("differential report against a state the server does not hold")

// Apply checks in against s and, when it is accepted, changes s as the
// report says and returns the history entries to write. A refused report
// leaves s unchanged.
//
// Controls missing from the report keep their stored record: a report that
// carries only events must not wipe the snapshot. With in.KeepVerdict (the
// report carried no control status: an empty Report {}, or events only)
// the verdict, its reasons, the failing-since time and the policy version
// stay as well (issue #14 item 10); only last_seen moves.
func Apply(s *State, in store.ReportInput) ([]store.HistoryEntry, error) {
	switch {
	case !s.RevokedAt.IsZero():
		return nil, store.ErrDeviceRevoked
	case in.CertSerial != s.CertSerial && (s.PrevSerial == "" || in.CertSerial != s.PrevSerial):
		return nil, store.ErrCertSuperseded
	case in.Facts != nil && in.Facts.MachineId != "" && in.Facts.MachineId != s.MachineID:
		// The certificate decides the device; facts naming another
		// machine are a copied identity or a forged report.
		return nil, store.ErrWrongDevice
	case in.Verdict != store.VerdictCompliant && in.Verdict != store.VerdictNoncompliant:
		return nil, fmt.Errorf("report verdict %q: want %s or %s", in.Verdict, store.VerdictCompliant, store.VerdictNoncompliant)
	}
	at := codec.Time(in.ReceivedAt)
	if in.BaseDigest != "" && in.BaseDigest != s.StateDigest {
		// A delta against a state this server does not hold (it never
		// had one, lost it, or was restored from an older backup): its
		// statuses cannot be applied. What it carries whole is kept:
		// facts and last_seen here, its events by the caller.
		s.LastSeen = at
		if in.Facts != nil {
			s.Facts = in.Facts
		}
		return nil, errNeedFull
	}
	controls, changes, err := mergeRaw(s.ID, s.Controls, &in, at)
	if err != nil {
		return nil, err
	}
	s.Controls = controls
	s.LastSeen = at
	if in.Facts != nil {
		s.Facts = in.Facts
	}
	// A report from an agent that keeps no digest ("") clears it: the
	// state is then known only from full reports.
	s.StateDigest = in.StateDigest
	if in.KeepVerdict && s.Verdict != store.VerdictNeverReported && s.Verdict != "" {
		return changes, nil
	}
	s.PolicyVersion = in.PolicyVersion
	s.VerdictPolicy = in.PolicyDigest
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
//
// Ingest merges encoded records (Apply); Merge is the same merge on decoded
// records.
func Merge(deviceID string, old []*mamoriv1.ControlRecord, statuses []*mamoriv1.ControlStatus, at time.Time) ([]*mamoriv1.ControlRecord, []store.HistoryEntry) {
	blob, err := codec.Controls(old)
	if err != nil {
		panic(err) // records built in memory always encode
	}
	raw, err := codec.ParseRawControls(blob)
	if err != nil {
		panic(err)
	}
	recs, changes, err := mergeRaw(deviceID, raw, &store.ReportInput{Statuses: statuses}, at)
	if err != nil {
		panic(err)
	}
	out, err := codec.ParseControls(codec.AppendRawControls(nil, recs))
	if err != nil {
		panic(err)
	}
	return out, changes
}

// mergeRaw is Merge on encoded records: a record the report does not
// mention is kept byte for byte, and a reported one is built from the
// status's encoding (made before the transaction when in.Encode ran).
func mergeRaw(deviceID string, old []codec.RawControl, in *store.ReportInput, at time.Time) ([]codec.RawControl, []store.HistoryEntry, error) {
	byName := make(map[string]int, len(old)+len(in.Statuses))
	for i, r := range old {
		byName[r.Control] = i
	}
	latest := make(map[string]int, len(in.Statuses))
	for i, st := range in.Statuses {
		if st != nil {
			latest[st.GetControl()] = i
		}
	}
	recs := make([]codec.RawControl, 0, len(old)+len(latest))
	for name, i := range byName {
		if _, reported := latest[name]; !reported {
			recs = append(recs, old[i])
		}
	}
	var since []byte
	type change struct {
		name     string
		from, to mamoriv1.ControlState
		st       *mamoriv1.ControlStatus
	}
	var changed []change
	for name, i := range latest {
		st := in.Statuses[i]
		enc, err := in.EncodedStatus(i)
		if err != nil {
			return nil, nil, err
		}
		prev := mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED // when new
		o, ok := byName[name]
		if ok {
			prev = old[o].State
		}
		if ok && prev == st.GetState() {
			recs = append(recs, codec.NewRawControl(st, enc, old[o].Since, old[o].HasSince))
			continue
		}
		if since == nil {
			since = codec.Since(at)
		}
		recs = append(recs, codec.NewRawControl(st, enc, since, true))
		if prev != st.GetState() {
			changed = append(changed, change{name, prev, st.GetState(), st})
		}
	}
	slices.SortFunc(recs, func(a, b codec.RawControl) int { return strings.Compare(a.Control, b.Control) })
	slices.SortFunc(changed, func(a, b change) int { return strings.Compare(a.name, b.name) })
	var changes []store.HistoryEntry
	for _, c := range changed {
		changes = append(changes, store.HistoryEntry{
			DeviceID: deviceID, Control: c.name, From: c.from, To: c.to, Detail: c.st.GetDetail(), DetailMsg: detailMsg(c.st), At: at,
		})
	}
	return recs, changes, nil
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

// detailMsg is st's detail message alone (nil when it has none), as a
// history entry keeps it.
func detailMsg(st *mamoriv1.ControlStatus) *mamoriv1.ControlStatus {
	if st.GetDetailId() == "" {
		return nil
	}
	return &mamoriv1.ControlStatus{DetailId: st.GetDetailId(), DetailArgs: st.GetDetailArgs(), DetailParts: st.GetDetailParts()}
}
