package sqlstore

import (
	"context"
	"fmt"

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
	evs, err := list(ctx, s, func(r Rows) (store.StoredEvent, error) {
		var (
			e    store.StoredEvent
			blob []byte
			at   Time
		)
		if err := r.Scan(&e.Seq, &e.DeviceID, &blob, &at); err != nil {
			return e, err
		}
		e.Event, e.ReceivedAt = &mamoriv1.Event{}, at.T
		return e, codec.Unmarshal(fmt.Sprintf("event %d", e.Seq), blob, e.Event)
	}, sqlText, args...)
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
