package store

import (
	"fmt"

	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// Encoding holds the protobuf encodings of a report's statuses and events,
// made before the report reaches the store (see ReportInput.Encode).
type Encoding struct {
	// Statuses[i] encodes Statuses[i] (nil for a nil status).
	Statuses [][]byte
	// Events[i] is the blob stored for Events[i] (nil for a nil event).
	Events [][]byte
}

// Encode fills in.Encoding with the deterministic encoding of every status
// and event, which IngestReports would otherwise make inside its
// transaction. Backends with one writer (SQLite) serialise everything done
// in the transaction; encoding first, on the submitting goroutine, moves
// that CPU work off the serialised path and onto whichever core is free.
// in.Statuses and in.Events must not change afterwards.
func (in *ReportInput) Encode() error {
	enc := &Encoding{Statuses: make([][]byte, len(in.Statuses)), Events: make([][]byte, len(in.Events))}
	for i, st := range in.Statuses {
		if st == nil {
			continue
		}
		b, err := codec.MarshalStatus(st)
		if err != nil {
			return fmt.Errorf("report of %s: %w", in.DeviceID, err)
		}
		enc.Statuses[i] = b
	}
	for i, e := range in.Events {
		if e == nil {
			continue
		}
		b, err := codec.Marshal(e)
		if err != nil {
			return fmt.Errorf("report of %s: %w", in.DeviceID, err)
		}
		enc.Events[i] = b
	}
	in.Encoding = enc
	return nil
}

// EncodedStatus returns the encoding of Statuses[i], from Encoding when
// Encode ran, otherwise made now.
func (in *ReportInput) EncodedStatus(i int) ([]byte, error) {
	if in.Encoding != nil && i < len(in.Encoding.Statuses) && in.Encoding.Statuses[i] != nil {
		return in.Encoding.Statuses[i], nil
	}
	return codec.MarshalStatus(in.Statuses[i])
}

// EncodedEvent returns the blob of Events[i], from Encoding when Encode
// ran, otherwise made now.
func (in *ReportInput) EncodedEvent(i int) ([]byte, error) {
	if in.Encoding != nil && i < len(in.Encoding.Events) && in.Encoding.Events[i] != nil {
		return in.Encoding.Events[i], nil
	}
	return codec.Marshal(in.Events[i])
}
