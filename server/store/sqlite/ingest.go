package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
)

// Chunk sizes keep every statement far below SQLite's 32766-variable limit
// while still writing hundreds of rows per statement.
const (
	loadChunk  = 500 // device IDs per SELECT … IN
	eventChunk = 400 // events per INSERT (4 variables each)
)

// IngestReports stores a batch of reports in one transaction: one SELECT
// per 500 devices, one UPDATE per device, one INSERT per 400 events and
// history rows only for changed controls.
func (s *Store) IngestReports(ctx context.Context, in []store.ReportInput) ([]store.ReportResult, error) {
	if len(in) == 0 {
		return nil, nil
	}
	var b *rules.Batch
	err := s.write(ctx, func(tx *sql.Tx) error {
		states, err := loadStates(ctx, tx, rules.DeviceIDs(in))
		if err != nil {
			return err
		}
		if b, err = rules.Plan(in, states); err != nil {
			return err
		}
		if err := writeUpdates(ctx, tx, b.Updates); err != nil {
			return err
		}
		if err := writeHistory(ctx, tx, b.History); err != nil {
			return err
		}
		return writeEvents(ctx, tx, b)
	})
	if err != nil {
		return nil, fmt.Errorf("ingest %d reports: %w", len(in), err)
	}
	return b.Results, nil
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

func loadStates(ctx context.Context, tx *sql.Tx, ids []string) (map[string]*rules.State, error) {
	states := make(map[string]*rules.State, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), loadChunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ids = ids[n:]
		rows, err := tx.QueryContext(ctx, `SELECT id, coalesce(machine_id, ''), cert_serial, revoked_at, verdict, reasons, failing_since,
			last_seen, policy_version, controls FROM devices WHERE id IN (`+placeholders(n, "?")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("load devices: %w", err)
		}
		if err := scanStates(rows, states); err != nil {
			return nil, fmt.Errorf("load devices: %w", err)
		}
	}
	return states, nil
}

func scanStates(rows *sql.Rows, states map[string]*rules.State) error {
	defer rows.Close()
	for rows.Next() {
		var (
			st                     rules.State
			revoked, failing, seen sql.NullInt64
			reasons                string
			controls               []byte
		)
		if err := rows.Scan(&st.ID, &st.MachineID, &st.CertSerial, &revoked, &st.Verdict, &reasons, &failing, &seen,
			&st.PolicyVersion, &controls); err != nil {
			return err
		}
		var err error
		if st.Controls, err = codec.ParseControls(controls); err != nil {
			return fmt.Errorf("device %s: %w", st.ID, err)
		}
		if st.Reasons, err = codec.ParseReasons(reasons); err != nil {
			return fmt.Errorf("device %s: %w", st.ID, err)
		}
		st.RevokedAt, st.FailingSince, st.LastSeen = ts(revoked), ts(failing), ts(seen)
		states[st.ID] = &st
	}
	return rows.Err()
}

func writeUpdates(ctx context.Context, tx *sql.Tx, us []rules.Update) error {
	if len(us) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE devices SET last_seen = ?, verdict = ?, reasons = ?,
		failing_since = ?, policy_version = ?, controls = ?,
		facts = coalesce(?, facts), hostname = coalesce(?, hostname) WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("prepare device update: %w", err)
	}
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
		n := min(len(hs), eventChunk)
		args := make([]any, 0, n*6)
		for _, h := range hs[:n] {
			args = append(args, h.DeviceID, h.Control, int32(h.From), int32(h.To), h.Detail, codec.Micros(h.At))
		}
		hs = hs[n:]
		if _, err := tx.ExecContext(ctx, `INSERT INTO control_history (device_id, control, from_state, to_state, detail, at)
			VALUES `+placeholders(n, "(?,?,?,?,?,?)"), args...); err != nil {
			return fmt.Errorf("insert control history: %w", err)
		}
	}
	return nil
}

// writeEvents inserts the batch's events, skipping ones already stored,
// and counts the new ones per report from RETURNING.
func writeEvents(ctx context.Context, tx *sql.Tx, b *rules.Batch) error {
	evs := b.Events
	for len(evs) > 0 {
		n := min(len(evs), eventChunk)
		args := make([]any, 0, n*4)
		for _, e := range evs[:n] {
			args = append(args, e.DeviceID, e.EventID, codec.Micros(e.ReceivedAt), e.Blob)
		}
		evs = evs[n:]
		rows, err := tx.QueryContext(ctx, `INSERT INTO events (device_id, event_id, received_at, event)
			VALUES `+placeholders(n, "(?,?,?,?)")+` ON CONFLICT (device_id, event_id) DO NOTHING
			RETURNING device_id, event_id`, args...)
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
