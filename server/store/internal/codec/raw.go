package codec

import (
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Field numbers of mamori.v1.ControlRecord and mamori.v1.ControlStatus that
// the raw snapshot reads.
const (
	recordStatusField  = 1
	recordSinceField   = 2
	statusControlField = 1
	statusStateField   = 3
)

// RawControl is one record of a control snapshot blob, decoded only as far
// as ingest needs it: the control's name and state and when it entered that
// state. Ingest rewrites every device's snapshot on every report; decoding
// each record (evidence maps, timestamps) and encoding it again made up a
// large share of the single writer's CPU time, although a report replaces
// most records wholesale and leaves the rest byte for byte as they were.
type RawControl struct {
	Control string
	State   mamoriv1.ControlState
	// Since is the encoded google.protobuf.Timestamp of the record;
	// HasSince is false when the record has none.
	Since    []byte
	HasSince bool
	// Record is the whole encoded ControlRecord, written back unchanged
	// while no report mentions the control.
	Record []byte
}

// ParseRawControls reads a blob that Controls (or AppendRawControls) wrote.
// The result aliases b.
func ParseRawControls(b []byte) ([]RawControl, error) {
	var recs []RawControl
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
		r, err := parseRawRecord(m)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

func corruptRecord(why string) error {
	return fmt.Errorf("decode control snapshot: stored blob is corrupt: %s", why)
}

func parseRawRecord(m []byte) (RawControl, error) {
	r := RawControl{Record: m}
	var (
		status         []byte
		hasStatus, dup bool
	)
	for b := m; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return RawControl{}, corruptRecord("bad record tag")
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == recordStatusField || num == recordSinceField) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return RawControl{}, corruptRecord("truncated record")
			}
			b = b[n:]
			if num == recordStatusField {
				dup = dup || hasStatus
				status, hasStatus = v, true
			} else {
				dup = dup || r.HasSince
				r.Since, r.HasSince = v, true
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return RawControl{}, corruptRecord("bad record field")
		}
		b = b[n:]
	}
	if dup {
		// A message field that occurs twice is merged by protobuf; no
		// encoder of ours writes that, so take the slow, exact path.
		return slowRecord(m)
	}
	for b := status; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return RawControl{}, corruptRecord("bad status tag")
		}
		b = b[n:]
		switch {
		case num == statusControlField && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return RawControl{}, corruptRecord("bad control name")
			}
			r.Control, b = string(v), b[n:]
		case num == statusStateField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return RawControl{}, corruptRecord("bad control state")
			}
			r.State, b = mamoriv1.ControlState(int32(v)), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return RawControl{}, corruptRecord("bad status field")
			}
			b = b[n:]
		}
	}
	return r, nil
}

// slowRecord decodes a record completely and re-encodes it canonically.
func slowRecord(m []byte) (RawControl, error) {
	rec := &mamoriv1.ControlRecord{}
	if err := Unmarshal("control snapshot", m, rec); err != nil {
		return RawControl{}, err
	}
	canon, err := marshal.Marshal(rec)
	if err != nil {
		return RawControl{}, fmt.Errorf("encode control %s: %w", rec.GetStatus().GetControl(), err)
	}
	return parseRawRecord(canon)
}

// NewRawControl builds the record of a control with the encoded status
// (MarshalStatus) and since (Since); hasSince false writes no since.
func NewRawControl(st *mamoriv1.ControlStatus, status, since []byte, hasSince bool) RawControl {
	rec := make([]byte, 0, len(status)+len(since)+8)
	rec = protowire.AppendTag(rec, recordStatusField, protowire.BytesType)
	rec = protowire.AppendBytes(rec, status)
	if hasSince {
		rec = protowire.AppendTag(rec, recordSinceField, protowire.BytesType)
		rec = protowire.AppendBytes(rec, since)
	}
	return RawControl{Control: st.GetControl(), State: st.GetState(), Since: since, HasSince: hasSince, Record: rec}
}

// AppendRawControls appends the snapshot blob of recs to dst; it is the
// same blob Controls writes for the decoded records.
func AppendRawControls(dst []byte, recs []RawControl) []byte {
	for _, r := range recs {
		dst = protowire.AppendTag(dst, controlsField, protowire.BytesType)
		dst = protowire.AppendBytes(dst, r.Record)
	}
	return dst
}

// MarshalStatus is the deterministic encoding of a control status, as a
// snapshot record holds it (a nil status encodes as empty).
func MarshalStatus(st *mamoriv1.ControlStatus) ([]byte, error) {
	b, err := marshal.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode control %s: %w", st.GetControl(), err)
	}
	return b, nil
}

// Since is the encoded google.protobuf.Timestamp of t, as a snapshot
// record's since holds it.
func Since(t time.Time) []byte {
	b, _ := marshal.Marshal(timestamppb.New(t)) // a Timestamp always encodes
	if b == nil {
		b = []byte{}
	}
	return b
}
