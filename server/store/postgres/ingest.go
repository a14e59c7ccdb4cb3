package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// WriteBatch writes a report batch with a fixed number of statements
// whatever its size: updates, history and events are each written with
// one statement over unnest()ed arrays.
func (dialect) WriteBatch(ctx context.Context, q sqlstore.Q, b *rules.Batch) error {
	tx, err := tx(q)
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	if err := writeUpdates(ctx, tx, b.Updates); err != nil {
		return err
	}
	if err := writeHistory(ctx, tx, b.History); err != nil {
		return err
	}
	return writeEvents(ctx, tx, b)
}

// nullTime is a nullable timestamptz array element.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func writeUpdates(ctx context.Context, tx pgx.Tx, us []rules.Update) error {
	if len(us) == 0 {
		return nil
	}
	var (
		ids, verdicts, reasons []string
		seen, failing          []*time.Time
		versions               []int64
		controls, facts        [][]byte
		hosts                  []*string
	)
	for _, u := range us {
		ids, verdicts, reasons = append(ids, u.ID), append(verdicts, u.Verdict), append(reasons, u.Reasons)
		seen, failing = append(seen, nullTime(u.LastSeen)), append(failing, nullTime(u.FailingSince))
		versions, controls, facts = append(versions, u.PolicyVersion), append(controls, u.Controls), append(facts, u.Facts)
		var h *string
		if u.Facts != nil {
			h = &u.Hostname
		}
		hosts = append(hosts, h)
	}
	_, err := tx.Exec(ctx, `UPDATE devices d SET last_seen = u.last_seen, verdict = u.verdict, reasons = u.reasons,
		failing_since = u.failing_since, policy_version = u.policy_version, controls = u.controls,
		facts = coalesce(u.facts, d.facts), hostname = coalesce(u.hostname, d.hostname)
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[],
			$7::bytea[], $8::bytea[], $9::text[])
			AS u (id, last_seen, verdict, reasons, failing_since, policy_version, controls, facts, hostname)
		WHERE d.id = u.id`, ids, seen, verdicts, reasons, failing, versions, controls, facts, hosts)
	if err != nil {
		return fmt.Errorf("update devices: %w", err)
	}
	return nil
}

func writeHistory(ctx context.Context, tx pgx.Tx, hs []store.HistoryEntry) error {
	if len(hs) == 0 {
		return nil
	}
	var (
		devs, controls, details []string
		from, to                []int32
		at                      []time.Time
		msgs                    [][]byte
	)
	for _, h := range hs {
		devs, controls, details = append(devs, h.DeviceID), append(controls, h.Control), append(details, h.Detail)
		from, to, at = append(from, int32(h.From)), append(to, int32(h.To)), append(at, codec.Time(h.At))
		msgs = append(msgs, codec.DetailMsg(h.DetailMsg))
	}
	// WITH ORDINALITY keeps the batch's order in the identity column.
	_, err := tx.Exec(ctx, `INSERT INTO control_history (device_id, control, from_state, to_state, detail, at, detail_msg)
		SELECT d, c, f, t, x, a, m FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::timestamptz[], $7::bytea[])
			WITH ORDINALITY AS u (d, c, f, t, x, a, m, n) ORDER BY n`, devs, controls, from, to, details, at, msgs)
	if err != nil {
		return fmt.Errorf("insert control history: %w", err)
	}
	return nil
}

// writeEvents inserts the batch's events, skipping ones already stored,
// and counts the new ones per report from RETURNING.
func writeEvents(ctx context.Context, tx pgx.Tx, b *rules.Batch) error {
	if len(b.Events) == 0 {
		return nil
	}
	var (
		devs, ids, kinds []string
		at               []time.Time
		blobs            [][]byte
	)
	for _, e := range b.Events {
		devs, ids, at, kinds, blobs = append(devs, e.DeviceID), append(ids, e.EventID), append(at, e.ReceivedAt), append(kinds, e.Kind), append(blobs, e.Blob)
	}
	rows, err := tx.Query(ctx, `INSERT INTO events (device_id, event_id, received_at, kind, event)
		SELECT d, i, a, k, e FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bytea[])
			WITH ORDINALITY AS u (d, i, a, k, e, n) ORDER BY n
		ON CONFLICT (device_id, event_id) DO NOTHING
		RETURNING device_id, event_id`, devs, ids, at, kinds, blobs)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var dev, ev string
		if err := rows.Scan(&dev, &ev); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		b.Inserted(dev, ev)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}
