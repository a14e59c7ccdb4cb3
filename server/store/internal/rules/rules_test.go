package rules

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

const (
	enforced = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	failed   = mamoriv1.ControlState_CONTROL_STATE_FAILED
)

func st(name string, s mamoriv1.ControlState, detail string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: name, State: s, Detail: detail}
}

func TestMerge(t *testing.T) {
	t1, t2 := time.Unix(100, 0).UTC(), time.Unix(200, 0).UTC()
	old := []*mamoriv1.ControlRecord{
		{Status: st("a", enforced, "x"), Since: timestamppb.New(t1)},
		{Status: st("b", enforced, "x"), Since: timestamppb.New(t1)},
	}
	tests := []struct {
		name        string
		statuses    []*mamoriv1.ControlStatus
		wantRecs    []*mamoriv1.ControlRecord
		wantChanged []string
	}{
		{"unchanged keeps since, takes detail", []*mamoriv1.ControlStatus{st("a", enforced, "y")},
			[]*mamoriv1.ControlRecord{{Status: st("a", enforced, "y"), Since: timestamppb.New(t1)}, old[1]}, nil},
		{"changed sets since", []*mamoriv1.ControlStatus{st("b", failed, "z")},
			[]*mamoriv1.ControlRecord{old[0], {Status: st("b", failed, "z"), Since: timestamppb.New(t2)}}, []string{"b"}},
		{"new control", []*mamoriv1.ControlStatus{st("0", enforced, "")},
			[]*mamoriv1.ControlRecord{{Status: st("0", enforced, ""), Since: timestamppb.New(t2)}, old[0], old[1]}, []string{"0"}},
		{"last of duplicates wins, flip-flop is no change", []*mamoriv1.ControlStatus{st("a", failed, ""), st("a", enforced, "back"), nil},
			[]*mamoriv1.ControlRecord{{Status: st("a", enforced, "back"), Since: timestamppb.New(t1)}, old[1]}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, h := Merge("d", old, tc.statuses, t2)
			if d := cmp.Diff(tc.wantRecs, recs, protocmp.Transform()); d != "" {
				t.Errorf("records (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantChanged, ChangedControls(h)); d != "" {
				t.Errorf("changes (-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckToken(t *testing.T) {
	exp := time.Unix(1000, 0)
	tests := []struct {
		name       string
		now        time.Time
		uses, used int
		want       error
	}{
		{"ok", exp.Add(-time.Microsecond), 1, 0, nil},
		{"at expiry", exp, 1, 0, store.ErrTokenExpired},
		{"a nanosecond before expiry is before it", exp.Add(-time.Nanosecond), 1, 0, nil},
		{"used up", exp.Add(-time.Hour), 2, 2, store.ErrTokenUsedUp},
		{"zero uses", exp.Add(-time.Hour), 0, 0, store.ErrTokenUsedUp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckToken(tc.now, exp, tc.uses, tc.used); got != tc.want {
				t.Errorf("CheckToken = %v, want %v", got, tc.want)
			}
		})
	}
}
