package codec

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestControlsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		recs []*mamoriv1.ControlRecord
	}{
		{"none", nil},
		{"two", []*mamoriv1.ControlRecord{
			{Status: &mamoriv1.ControlStatus{Control: "media", State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Evidence: map[string]string{"a": "b"}}, Since: timestamppb.New(time.Unix(1, 0))},
			{Status: &mamoriv1.ControlStatus{Control: "mfa"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Controls(tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseControls(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.recs, got, protocmp.Transform()); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseControlsCorrupt(t *testing.T) {
	for _, b := range [][]byte{{0x0a}, {0x0a, 0x05, 0x01}, {0x12, 0x00}, {0x0a, 0x02, 0xff, 0xff}, {0xff}} {
		if _, err := ParseControls(b); err == nil {
			t.Errorf("ParseControls(%x) succeeded", b)
		}
	}
}

func FuzzParseControls(f *testing.F) {
	b, _ := Controls([]*mamoriv1.ControlRecord{{Status: &mamoriv1.ControlStatus{Control: "media"}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ParseControls(b)
		if err != nil {
			return
		}
		if _, err := Controls(recs); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTime(t *testing.T) {
	in := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("JST", 9*3600))
	got := Time(in)
	if got.Location() != time.UTC || got.Nanosecond() != 6000 || !got.Equal(in.Truncate(time.Microsecond)) {
		t.Errorf("Time(%v) = %v", in, got)
	}
	if !Time(time.Time{}).IsZero() || Micros(time.Time{}) != nil {
		t.Error("zero time not kept zero")
	}
	if back := FromMicros(got.UnixMicro(), true); !back.Equal(got) || back.Location() != time.UTC {
		t.Errorf("FromMicros = %v", back)
	}
}

// FuzzParseReasons: a stored reasons column is refused as corrupt or
// decodes to a list that encodes and decodes to itself.
func FuzzParseReasons(f *testing.F) {
	for _, s := range []string{"", "[]", `["media: FAILED"]`, `["a","b"]`, "null", `[1]`, `["\ud800"]`, "[", strings.Repeat("[", 10000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReasons(s)
		if err != nil {
			return
		}
		again, err := ParseReasons(Reasons(r))
		if err != nil || len(again) != len(r) {
			t.Fatalf("%q: round trip %q, %v; want %q", s, again, err, r)
		}
		for i := range r {
			if again[i] != r[i] {
				t.Fatalf("%q: round trip %q; want %q", s, again, r)
			}
		}
	})
}

// A detail message round-trips; one too large is not kept; stored bytes
// that are not one are an error, never a panic.
func TestDetailMsg(t *testing.T) {
	if DetailMsg(&mamoriv1.ControlStatus{Detail: "english only"}) != nil {
		t.Error("a status without a detail_id got a detail message")
	}
	st := &mamoriv1.ControlStatus{Control: "media", Detail: "d", DetailId: "detail.problems", DetailArgs: []string{"2", "a; b"},
		DetailParts: []*mamoriv1.DetailPart{{Id: "detail.a", Args: []string{"<x>"}}, {Id: "detail.b"}}}
	got, err := ParseDetailMsg(DetailMsg(st))
	if err != nil {
		t.Fatal(err)
	}
	want := &mamoriv1.ControlStatus{DetailId: st.DetailId, DetailArgs: st.DetailArgs, DetailParts: st.DetailParts}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	big := &mamoriv1.ControlStatus{DetailId: "detail.x", DetailArgs: []string{strings.Repeat("x", MaxDetailMsg)}}
	if DetailMsg(big) != nil {
		t.Error("an oversized detail message was kept")
	}
	if m, err := ParseDetailMsg(nil); m != nil || err != nil {
		t.Errorf("NULL: %v, %v", m, err)
	}
	for _, bad := range [][]byte{{0xff}, []byte(strings.Repeat("x", MaxDetailMsg+1))} {
		if _, err := ParseDetailMsg(bad); err == nil {
			t.Errorf("ParseDetailMsg(%d bytes of garbage) succeeded", len(bad))
		}
	}
}

func FuzzParseDetailMsg(f *testing.F) {
	f.Add(DetailMsg(&mamoriv1.ControlStatus{DetailId: "detail.problems", DetailArgs: []string{"2", "a"},
		DetailParts: []*mamoriv1.DetailPart{{Id: "detail.a"}}}))
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDetailMsg(b)
		if err != nil {
			return
		}
		if len(b) > MaxDetailMsg {
			t.Fatalf("accepted %d bytes", len(b))
		}
		// What parses encodes again within the bound.
		if m != nil && m.GetDetailId() != "" && len(DetailMsg(m)) > MaxDetailMsg {
			t.Fatal("re-encoding exceeds the bound")
		}
	})
}
