package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// historyChunk keeps every history INSERT far below SQLite's 32766-variable
// limit while still writing hundreds of rows per statement.
const historyChunk = 400 // history rows per INSERT (7 variables each)

// Events are inserted with statements prepared once, at Open, for
// eventRows rows and for every power of two below it: a batch's events go
// in as full eventRows statements and the rest as at most one statement of
// each smaller size. A fresh statement of the batch's exact size (hundreds
// of rows, five variables each) ran SQLite's parser over thousands of tokens
// on every batch, inside the single writer (about 7 % of its CPU).
const eventRows = 128

func insertEventsSQL(n int) string {
	return `INSERT INTO events (device_id, event_id, received_at, kind, event)
		VALUES ` + placeholders(n, "(?,?,?,?,?)") + ` ON CONFLICT (device_id, event_id) DO NOTHING
		RETURNING device_id, event_id`
}

const updateDeviceSQL = `UPDATE devices SET last_seen = ?, verdict = ?, reasons = ?,
		failing_since = ?, policy_version = ?, controls = ?,
		facts = coalesce(?, facts), hostname = coalesce(?, hostname) WHERE id = ?`

// ingestStmts are the write path's statements, prepared on the writer's
// one connection; tx.StmtContext reuses them inside each transaction.
type ingestStmts struct {
	events map[int]*sql.Stmt // by rows: eventRows, eventRows/2, … 1
	update *sql.Stmt
}

func prepareIngest(ctx context.Context, w *sql.DB) (*ingestStmts, error) {
	st := &ingestStmts{events: make(map[int]*sql.Stmt)}
	for n := eventRows; n >= 1; n /= 2 {
		p, err := w.PrepareContext(ctx, insertEventsSQL(n))
		if err != nil {
			st.close()
			return nil, fmt.Errorf("prepare event insert: %w", err)
		}
		st.events[n] = p
	}
	p, err := w.PrepareContext(ctx, updateDeviceSQL)
	if err != nil {
		st.close()
		return nil, fmt.Errorf("prepare device update: %w", err)
	}
	st.update = p
	return st, nil
}

func (st *ingestStmts) close() error {
	var errs []error
	for _, p := range st.events {
		errs = append(errs, p.Close())
	}
	if st.update != nil {
		errs = append(errs, st.update.Close())
	}
	return errors.Join(errs...)
}

// WriteBatch writes a report batch: one UPDATE per device, history rows
// only for changed controls (400 a statement), and the events with the
// statements prepared at Open (128 a statement, then one per power of two
// for the rest).
func (d dialect) WriteBatch(ctx context.Context, q sqlstore.Q, b *rules.Batch) error {
	tx, err := tx(q)
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	if err := d.s.writeUpdates(ctx, tx, b.Updates); err != nil {
		return err
	}
	if err := writeHistory(ctx, tx, b.History); err != nil {
		return err
	}
	return d.s.writeEvents(ctx, tx, b)
}

func placeholders(n int, row string) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	return sb.String()
}

func (s *Store) writeUpdates(ctx context.Context, tx *sql.Tx, us []rules.Update) error {
	if len(us) == 0 {
		return nil
	}
	stmt := tx.StmtContext(ctx, s.stmts.update)
	defer stmt.Close()
	for _, u := range us {
		var facts, host any
		if u.Facts != nil {
			facts, host = u.Facts, u.Hostname
		}
		if _, err := stmt.ExecContext(ctx, codec.Micros(u.LastSeen), u.Verdict, u.Reasons,
			codec.Micros(u.FailingSince), u.PolicyVersion, u.Controls, facts, host, u.ID); err != nil {
			return fmt.Errorf("update device %s: %w", u.ID, err)
		}
	}
	return nil
}

func writeHistory(ctx context.Context, tx *sql.Tx, hs []store.HistoryEntry) error {
	for len(hs) > 0 {
		n := min(len(hs), historyChunk)
		args := make([]any, 0, n*7)
		for _, h := range hs[:n] {
			args = append(args, h.DeviceID, h.Control, int32(h.From), int32(h.To), h.Detail, codec.DetailMsg(h.DetailMsg), codec.Micros(h.At))
		}
		hs = hs[n:]
		if _, err := tx.ExecContext(ctx, `INSERT INTO control_history (device_id, control, from_state, to_state, detail, detail_msg, at)
			VALUES `+placeholders(n, "(?,?,?,?,?,?,?)"), args...); err != nil {
			return fmt.Errorf("insert control history: %w", err)
		}
	}
	return nil
}

// writeEvents inserts the batch's events, skipping ones already stored,
// and counts the new ones per report from RETURNING.
func (s *Store) writeEvents(ctx context.Context, tx *sql.Tx, b *rules.Batch) error {
	evs := b.Events
	args := make([]any, 0, eventRows*5)
	for len(evs) > 0 {
		n := eventRows
		for n > len(evs) {
			n /= 2
		}
		args = args[:0]
		for _, e := range evs[:n] {
			args = append(args, e.DeviceID, e.EventID, codec.Micros(e.ReceivedAt), e.Kind, e.Blob)
		}
		evs = evs[n:]
		stmt := tx.StmtContext(ctx, s.stmts.events[n])
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if err := countInserted(rows, b); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

func countInserted(rows *sql.Rows, b *rules.Batch) error {
	defer rows.Close()
	for rows.Next() {
		var dev, ev string
		if err := rows.Scan(&dev, &ev); err != nil {
			return err
		}
		b.Inserted(dev, ev)
	}
	return rows.Err()
}
