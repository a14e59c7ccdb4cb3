package sqlstore

import (
	"context"
	"fmt"
	"strings"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// ListEvents returns stored events, newest first.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]store.StoredEvent, error) {
	sqlText := "SELECT seq, device_id, event, received_at FROM events WHERE TRUE"
	var args []any
	if f.DeviceID != "" {
		sqlText += " AND device_id = ?"
		args = append(args, f.DeviceID)
	}
	if f.BeforeSeq > 0 {
		sqlText += " AND seq < ?"
		args = append(args, f.BeforeSeq)
	}
	sqlText += " ORDER BY seq DESC LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	evs, err := list(ctx, s, scanEventStrict, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return evs, nil
}

// CountEvents counts a device's events, or all with an empty ID.
func (s *Store) CountEvents(ctx context.Context, deviceID string) (int64, error) {
	sqlText, args := "SELECT count(*) FROM events", []any{}
	if deviceID != "" {
		sqlText, args = sqlText+" WHERE device_id = ?", append(args, deviceID)
	}
	var n int64
	err := s.read(ctx, func(q Q) error { return queryRow(ctx, q, sqlText, args...).Scan(&n) })
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// ControlHistory returns a device's control state changes, newest first.
func (s *Store) ControlHistory(ctx context.Context, deviceID string, limit int) ([]store.HistoryEntry, error) {
	hs, err := list(ctx, s, func(r Rows) (store.HistoryEntry, error) {
		var (
			h        store.HistoryEntry
			from, to int32
			at       Time
			msg      []byte
		)
		if err := r.Scan(&h.DeviceID, &h.Control, &from, &to, &h.Detail, &at, &msg); err != nil {
			return h, err
		}
		h.From, h.To, h.At = mamoriv1.ControlState(from), mamoriv1.ControlState(to), at.T
		var err error
		h.DetailMsg, err = codec.ParseDetailMsg(msg)
		return h, err
	}, `SELECT device_id, control, from_state, to_state, detail, at, detail_msg
		FROM control_history WHERE device_id = ? ORDER BY id DESC LIMIT ?`, deviceID, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("control history of %s: %w", deviceID, err)
	}
	return hs, nil
}

// ListFileLog returns the file log's records received in the period, in
// the order received or newest first (the partial index events_file_log,
// migration 0014).
func (s *Store) ListFileLog(ctx context.Context, f store.FileLogFilter) ([]store.StoredEvent, error) {
	var args []any
	sqlText := "SELECT e.seq, e.device_id, e.event, e.received_at FROM events e"
	// The kinds are written out, as in the index's predicate: a planner
	// proves a partial index usable from constants, not from a parameter.
	sqlText += " WHERE e.kind IN ('" + strings.Join(store.FileLogKinds, "', '") + "')" +
		" AND e.received_at >= ? AND e.received_at < ?"
	args = append(args, s.d.Stamp(f.From), s.d.Stamp(f.To))
	if f.Group != "" {
		// A lookup per record, not a join: a join lets the planner start
		// from the group's devices and walk every event they ever sent.
		sqlText += " AND (SELECT d.device_group FROM devices d WHERE d.id = e.device_id) = ?"
		args = append(args, f.Group)
	}
	if f.DeviceID != "" {
		sqlText += " AND e.device_id = ?"
		args = append(args, f.DeviceID)
	}
	cmp, order := ">", "ASC"
	if f.Newest {
		cmp, order = "<", "DESC"
	}
	if !f.After.ReceivedAt.IsZero() || f.After.Seq != 0 {
		sqlText += " AND (e.received_at " + cmp + " ? OR (e.received_at = ? AND e.seq " + cmp + " ?))"
		args = append(args, s.d.Stamp(f.After.ReceivedAt), s.d.Stamp(f.After.ReceivedAt), f.After.Seq)
	}
	sqlText += " ORDER BY e.received_at " + order + ", e.seq " + order + " LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	// A damaged record is listed as kind "undecodable" (scanEvent), not
	// an error: the report says it is there rather than stopping.
	evs, err := list(ctx, s, scanEvent, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list file log: %w", err)
	}
	return evs, nil
}

// kindBackfillBatch is how many events one backfill transaction fills in.
const kindBackfillBatch = 500

// BackfillEventKinds fills in the kind column of events stored before
// migration 0014 from each stored event, a batch a transaction, and
// returns how many it filled. It runs when the store opens; once done the
// partial index it walks (events_kind_missing) is empty and it costs one
// index probe. An event that no longer decodes gets the empty kind: what
// it was cannot be known (ListEvents reports it as corrupt), and leaving
// it NULL would make every later open read it again.
func (s *Store) BackfillEventKinds(ctx context.Context) (int, error) {
	total := 0
	for {
		type row struct {
			seq  int64
			kind string
		}
		var rows []row
		err := s.read(ctx, func(q Q) error {
			var err error
			rows, err = query(ctx, q, func(r Rows) (row, error) {
				var (
					x    row
					blob []byte
				)
				if err := r.Scan(&x.seq, &blob); err != nil {
					return x, err
				}
				var e mamoriv1.Event
				if codec.Unmarshal("event", blob, &e) == nil {
					x.kind = e.GetKind()
				}
				return x, nil
			}, "SELECT seq, event FROM events WHERE kind IS NULL ORDER BY seq LIMIT ?", kindBackfillBatch)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("backfill event kinds: %w", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		err = s.write(ctx, func(q Q) error {
			for _, x := range rows {
				if _, err := q.Exec(ctx, "UPDATE events SET kind = ? WHERE seq = ? AND kind IS NULL", x.kind, x.seq); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("backfill event kinds: %w", err)
		}
		total += len(rows)
	}
}

// scanEventStrict is scanEvent for the readers that report a damaged
// stored event as an error.
func scanEventStrict(r Rows) (store.StoredEvent, error) {
	e, blob, err := scanEventRow(r)
	if err != nil {
		return e, err
	}
	return e, codec.Unmarshal(fmt.Sprintf("event %d", e.Seq), blob, e.Event)
}

// scanEventRow reads seq, device_id, event, received_at; the event is
// left to decode.
func scanEventRow(r Rows) (store.StoredEvent, []byte, error) {
	var (
		e    store.StoredEvent
		blob []byte
		at   Time
	)
	if err := r.Scan(&e.Seq, &e.DeviceID, &blob, &at); err != nil {
		return e, nil, err
	}
	e.Event, e.ReceivedAt = &mamoriv1.Event{}, at.T
	return e, blob, nil
}
