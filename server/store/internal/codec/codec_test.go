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
