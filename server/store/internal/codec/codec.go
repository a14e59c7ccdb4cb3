// Package codec turns store values into column values and back, the same
// way for every backend: times at microsecond precision in UTC, protos as
// deterministic binary blobs, reasons as a JSON array and the control
// snapshot as one blob.
package codec

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Time is t as stored: UTC, truncated to the microsecond. The zero time
// stays zero (stored as NULL).
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Micros is t as microseconds since the Unix epoch, or nil for the zero
// time, for backends without a native timestamp type.
func Micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// FromMicros is the inverse of Micros; a NULL (invalid) value is the zero
// time.
func FromMicros(v int64, valid bool) time.Time {
	if !valid {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

var marshal = proto.MarshalOptions{Deterministic: true}

// Marshal encodes m; a nil message is a nil blob.
func Marshal(m proto.Message) ([]byte, error) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil, nil
	}
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

// Unmarshal decodes b into m; what names the column in the error.
func Unmarshal(what string, b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %s: stored blob is corrupt: %w", what, err)
	}
	return nil
}

// Facts decodes a stored facts blob; an empty blob is nil facts.
func Facts(b []byte) (*mamoriv1.DeviceFacts, error) {
	if len(b) == 0 {
		return nil, nil
	}
	f := &mamoriv1.DeviceFacts{}
	if err := Unmarshal("device facts", b, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Reasons encodes reasons as a JSON array ("[]" when empty).
func Reasons(r []string) string {
	if len(r) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(r) // a []string always encodes
	return string(b)
}

// ParseReasons decodes what Reasons encoded; empty is nil.
func ParseReasons(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var r []string
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("decode verdict reasons: stored value is corrupt: %w", err)
	}
	return r, nil
}

// controlsField is the field number of each record in the snapshot blob.
// The blob is wire-compatible with a message holding
// `repeated ControlRecord controls = 1`, so any protobuf tool can read it.
const controlsField = 1

// Controls encodes a device's control snapshot as one blob.
//
// The snapshot is a blob on the devices row rather than one row per control
// because every report rewrites it: one UPDATE per report instead of ten
// upserts keeps ingest at a few statements per report. History rows, which
// are queried per control, are written only when a state changes.
func Controls(recs []*mamoriv1.ControlRecord) ([]byte, error) {
	var b []byte
	for _, r := range recs {
		m, err := marshal.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode control %s: %w", r.GetStatus().GetControl(), err)
		}
		b = protowire.AppendTag(b, controlsField, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b, nil
}

// ParseControls decodes what Controls encoded.
func ParseControls(b []byte) ([]*mamoriv1.ControlRecord, error) {
	var recs []*mamoriv1.ControlRecord
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != controlsField || typ != protowire.BytesType {
			return nil, fmt.Errorf("decode control snapshot: stored blob is corrupt at byte %d", len(b))
		}
		b = b[n:]
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("decode control snapshot: stored blob is corrupt: truncated")
		}
		b = b[n:]
		r := &mamoriv1.ControlRecord{}
		if err := Unmarshal("control snapshot", m, r); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Limit is the page size used when a caller passes limit <= 0.
func Limit(n int) int {
	if n <= 0 {
		return 100
	}
	return n
}

// MaxDetailMsg bounds a stored detail message (HistoryEntry.DetailMsg).
// The wire allows far more (eight parts of eight 4 KiB arguments); a
// message past this is not kept and the English detail stands alone.
const MaxDetailMsg = 8 << 10

// DetailMsg encodes st's detail message (detail_id, detail_args and
// detail_parts) for control_history.detail_msg: nil when st has none or
// its encoding would exceed MaxDetailMsg.
func DetailMsg(st *mamoriv1.ControlStatus) []byte {
	if st.GetDetailId() == "" {
		return nil
	}
	m := &mamoriv1.ControlStatus{DetailId: st.GetDetailId(), DetailArgs: st.GetDetailArgs(), DetailParts: st.GetDetailParts()}
	if proto.Size(m) > MaxDetailMsg {
		return nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

// ParseDetailMsg decodes a stored detail message; nil for NULL.
func ParseDetailMsg(b []byte) (*mamoriv1.ControlStatus, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) > MaxDetailMsg {
		return nil, fmt.Errorf("detail message of %d bytes; at most %d", len(b), MaxDetailMsg)
	}
	m := &mamoriv1.ControlStatus{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("detail message: %w", err)
	}
	return m, nil
}
