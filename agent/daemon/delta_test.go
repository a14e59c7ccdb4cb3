package daemon

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func deltaStatus(control string, state mamoriv1.ControlState, ev map[string]string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: control, State: state, Evidence: ev, ObservedAt: timestamppb.Now()}
}

// A control is "changed" by its state, detail or non-measurement evidence;
// observed_at and the measurement keys change nothing. The digest covers
// the whole state: controls, facts, policy.
func TestDelta(t *testing.T) {
	enf, failed := mamoriv1.ControlState_CONTROL_STATE_ENFORCED, mamoriv1.ControlState_CONTROL_STATE_FAILED
	facts := &mamoriv1.DeviceFacts{Hostname: "pc-01", MachineId: "m-1"}
	base := []*mamoriv1.ControlStatus{
		deltaStatus("agent", enf, map[string]string{"agent_version": "1", "rtt_ms": "3", "clock_skew_ms": "10"}),
		deltaStatus("media", enf, map[string]string{"udev_rule_sha256": "aa"}),
	}
	b := newReportState(base, facts, 3, "d")
	tests := []struct {
		name        string
		statuses    []*mamoriv1.ControlStatus
		facts       *mamoriv1.DeviceFacts
		version     int64
		wantChanged []string
		wantFacts   bool
		sameDigest  bool
	}{
		{"nothing but measurements", []*mamoriv1.ControlStatus{
			deltaStatus("agent", enf, map[string]string{"agent_version": "1", "rtt_ms": "9", "clock_skew_ms": "-4"}),
			deltaStatus("media", enf, map[string]string{"udev_rule_sha256": "aa"}),
		}, facts, 3, nil, false, true},
		{"clock skew by a second", []*mamoriv1.ControlStatus{
			deltaStatus("agent", enf, map[string]string{"agent_version": "1", "rtt_ms": "3", "clock_skew_ms": "1700"}),
			base[1],
		}, facts, 3, []string{"agent"}, false, false},
		{"media fails", []*mamoriv1.ControlStatus{base[0], deltaStatus("media", failed, map[string]string{"udev_rule_sha256": "aa"})},
			facts, 3, []string{"media"}, false, false},
		{"evidence that is not a measurement", []*mamoriv1.ControlStatus{base[0], deltaStatus("media", enf, map[string]string{"udev_rule_sha256": "bb"})},
			facts, 3, []string{"media"}, false, false},
		{"a new control", append(base[:2:2], deltaStatus("isolation", enf, nil)), facts, 3, []string{"isolation"}, false, false},
		{"facts", base, &mamoriv1.DeviceFacts{Hostname: "pc-02", MachineId: "m-1"}, 3, nil, true, false},
		{"policy version", base, facts, 4, nil, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := newReportState(tc.statuses, tc.facts, tc.version, "d")
			req := &mamoriv1.ReportRequest{Statuses: tc.statuses, Facts: tc.facts, StateDigest: cur.raw}
			makeDelta(req, cur, b)
			var got []string
			for _, st := range req.Statuses {
				got = append(got, st.Control)
			}
			if len(got) != len(tc.wantChanged) || (len(got) > 0 && got[0] != tc.wantChanged[0]) {
				t.Errorf("changed %v, want %v", got, tc.wantChanged)
			}
			if (req.Facts != nil) != tc.wantFacts {
				t.Errorf("facts sent: %v, want %v", req.Facts != nil, tc.wantFacts)
			}
			if (cur.digest == b.digest) != tc.sameDigest {
				t.Errorf("digest same: %v, want %v", cur.digest == b.digest, tc.sameDigest)
			}
			if string(req.BaseDigest) != string(b.raw) || len(cur.digest) != 64 || (req.StateDigest == nil) != tc.sameDigest {
				t.Errorf("base %q digest %q", req.BaseDigest, cur.digest)
			}
		})
	}
}
