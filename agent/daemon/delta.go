package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// DefaultFullReportEvery is how often the agent sends a full report even
// when the server holds its state: a safety net against any difference a
// digest cannot show (a server bug, a database edited by hand), and what
// refreshes the measurement evidence (VolatileEvidence) on the server.
const DefaultFullReportEvery = 6 * time.Hour

// VolatileEvidence are evidence keys that are measurements, different in
// almost every round (clock skew, round trip, spool fill, packet counts).
// They do not make a control "changed": a no-change report would never
// happen otherwise. They travel with the control whenever it is sent (a
// real change, a full report), so the server's copy is at most
// FullReportEvery old. A change that matters is seen in the control's
// state or detail (a skew past the limit, a spool near full), and the
// clock skew counts in whole seconds (coarseEvidence).
var VolatileEvidence = []string{
	"clock_skew_ms", "rtt_ms", "clock_skew_measured_at",
	"spool_backlog", "spool_bytes", "spool_free_bytes", "spool_oldest_unsent_age",
	"ruleset.dropped_packets",
}

// coarseEvidence are volatile keys that count as a change when they move
// by more than their noise: the clock skew by a second or more (its
// milliseconds vary with every round trip). The exact value is sent with
// the change.
var coarseEvidence = map[string]func(string) string{
	"clock_skew_ms": func(v string) string {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return v // "unknown"
		}
		s := (ms + 500) / 1000
		if ms < 0 {
			s = (ms - 500) / 1000
		}
		return strconv.FormatInt(s, 10)
	},
}

// reportState is the agent's whole state as the differential report sees
// it: a change key per control, the facts' encoding, and the digest of it
// all (ReportRequest.state_digest).
type reportState struct {
	digest   string // hex, as the server stores it
	raw      []byte // as it goes on the wire
	statuses map[string][]byte
	facts    []byte
	// fullAt is when the server last acknowledged a full report of
	// this agent.
	fullAt time.Time
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// statusKey is what makes a control "changed": its status without
// observed_at and without the volatile evidence.
func statusKey(st *mamoriv1.ControlStatus) []byte {
	c := &mamoriv1.ControlStatus{
		Control: st.GetControl(), Mode: st.GetMode(), State: st.GetState(), Detail: st.GetDetail(),
		DetailId: st.GetDetailId(), DetailArgs: st.GetDetailArgs(), DetailParts: st.GetDetailParts(),
	}
	if len(st.GetEvidence()) > 0 {
		c.Evidence = maps.Clone(st.GetEvidence())
		for _, k := range VolatileEvidence {
			delete(c.Evidence, k)
		}
		for k, coarse := range coarseEvidence {
			if v, ok := st.GetEvidence()[k]; ok {
				c.Evidence[k+"~"] = coarse(v)
			}
		}
	}
	b, err := deterministic.Marshal(c)
	if err != nil {
		// Only invalid UTF-8 fails; wire.Status made it valid. Such a
		// control counts as changed every round, which is safe.
		return nil
	}
	return b
}

// newReportState computes the state of a report about to be sent.
func newReportState(statuses []*mamoriv1.ControlStatus, facts *mamoriv1.DeviceFacts, policyVersion int64, policyDigest string) *reportState {
	s := &reportState{statuses: make(map[string][]byte, len(statuses))}
	for _, st := range statuses {
		s.statuses[st.GetControl()] = statusKey(st)
	}
	if facts != nil {
		s.facts, _ = deterministic.Marshal(facts)
	}
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("mamori report state v1"))
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(policyVersion))
	field(v[:])
	field([]byte(policyDigest))
	field(s.facts)
	for _, name := range slices.Sorted(maps.Keys(s.statuses)) {
		field([]byte(name))
		field(s.statuses[name])
	}
	s.raw = h.Sum(nil)
	s.digest = hex.EncodeToString(s.raw)
	return s
}

// makeDelta turns the full report req (whose state is cur) into a
// differential one against base: only the controls whose key changed,
// and the facts only when they changed.
func makeDelta(req *mamoriv1.ReportRequest, cur, base *reportState) {
	req.BaseDigest = base.raw
	if cur.digest == base.digest {
		req.StateDigest = nil // no change: the state is the base
	}
	changed := req.Statuses[:0:0]
	for _, st := range req.Statuses {
		if old, ok := base.statuses[st.GetControl()]; !ok || old == nil || !bytes.Equal(old, cur.statuses[st.GetControl()]) {
			changed = append(changed, st)
		}
	}
	req.Statuses = changed
	if bytes.Equal(cur.facts, base.facts) {
		req.Facts = nil
	}
}
