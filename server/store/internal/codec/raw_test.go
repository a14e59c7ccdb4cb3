package codec

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// The raw snapshot must read what Controls wrote and write back exactly
// the same blob, and a record built by NewRawControl must equal the one
// Controls encodes for the same decoded record.
func TestRawControlsRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123000).UTC()
	st := func(name string, s mamoriv1.ControlState) *mamoriv1.ControlStatus {
		return &mamoriv1.ControlStatus{Control: name, Mode: mamoriv1.Mode_MODE_ENFORCE, State: s, Detail: "d",
			Evidence: map[string]string{"b": "2", "a": "1"}, ObservedAt: timestamppb.New(at)}
	}
	recs := []*mamoriv1.ControlRecord{
		{Status: st("agent", mamoriv1.ControlState_CONTROL_STATE_ENFORCED), Since: timestamppb.New(at)},
		{Status: st("media", mamoriv1.ControlState_CONTROL_STATE_FAILED)}, // no since
		{Status: st("zero", mamoriv1.ControlState_CONTROL_STATE_DEGRADED), Since: &timestamppb.Timestamp{}},
	}
	blob, err := Controls(recs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ParseRawControls(blob)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendRawControls(nil, raw); !bytes.Equal(got, blob) {
		t.Fatalf("raw round trip changed the blob")
	}
	for i, r := range recs {
		if raw[i].Control != r.GetStatus().GetControl() || raw[i].State != r.GetStatus().GetState() || raw[i].HasSince != (r.Since != nil) {
			t.Errorf("record %d read as %+v", i, raw[i])
		}
		enc, err := MarshalStatus(r.GetStatus())
		if err != nil {
			t.Fatal(err)
		}
		var since []byte
		if r.Since != nil {
			since, _ = marshal.Marshal(r.Since)
		}
		one, _ := Controls([]*mamoriv1.ControlRecord{r})
		if got := AppendRawControls(nil, []RawControl{NewRawControl(r.GetStatus(), enc, since, r.Since != nil)}); !bytes.Equal(got, one) {
			t.Errorf("record %d built differently from Controls", i)
		}
	}
	if got := Since(at); !bytes.Equal(got, mustMarshal(t, timestamppb.New(at))) {
		t.Errorf("Since differs from the Timestamp encoding")
	}
	for _, bad := range [][]byte{{0x0a, 0xff, 0x01}, {0x12, 0x00}, {0x0a, 0x02, 0x0a, 0x05}} {
		if _, err := ParseRawControls(bad); err == nil {
			t.Errorf("ParseRawControls(%x) accepted a corrupt blob", bad)
		}
	}
}

func mustMarshal(t *testing.T, m *timestamppb.Timestamp) []byte {
	t.Helper()
	b, err := marshal.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
