package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// PutDailySnapshot upserts one day's counts.
func (s *Store) PutDailySnapshot(ctx context.Context, d store.DailySnapshot) error {
	if len(d.Day) != 10 {
		return fmt.Errorf("daily snapshot: day %q is not YYYY-MM-DD", d.Day)
	}
	return s.write(ctx, func(q Q) error {
		_, err := q.Exec(ctx, `INSERT INTO compliance_daily (day, total, compliant, noncompliant, offline, never_reported, revoked, taken_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (day) DO UPDATE SET total = excluded.total, compliant = excluded.compliant,
				noncompliant = excluded.noncompliant, offline = excluded.offline,
				never_reported = excluded.never_reported, revoked = excluded.revoked, taken_at = excluded.taken_at
			WHERE compliance_daily.taken_at <= excluded.taken_at`,
			d.Day, d.Total, d.Compliant, d.Noncompliant, d.Offline, d.NeverReported, d.Revoked, d.TakenAt.UnixMicro())
		if err != nil {
			return fmt.Errorf("put daily snapshot: %w", err)
		}
		return nil
	})
}

// DailySnapshots returns the days in [from, to].
func (s *Store) DailySnapshots(ctx context.Context, from, to string) ([]store.DailySnapshot, error) {
	out, err := list(ctx, s, func(r Rows) (store.DailySnapshot, error) {
		var d store.DailySnapshot
		var at int64
		err := r.Scan(&d.Day, &d.Total, &d.Compliant, &d.Noncompliant, &d.Offline, &d.NeverReported, &d.Revoked, &at)
		d.TakenAt = codec.FromMicros(at, true)
		return d, err
	}, `SELECT day, total, compliant, noncompliant, offline, never_reported, revoked, taken_at
		FROM compliance_daily WHERE day >= ? AND day <= ? ORDER BY day`, from, to)
	if err != nil {
		return nil, fmt.Errorf("daily snapshots: %w", err)
	}
	return out, nil
}

// CountByControl counts devices by control and state: the whole
// control_states index in one pass, minus the (few) revoked devices'
// rows, so no join over the fleet.
func (s *Store) CountByControl(ctx context.Context) ([]store.ControlCount, error) {
	type key struct {
		c string
		s int32
	}
	n := map[key]int64{}
	scan := func(sign int64) func(Rows) (struct{}, error) {
		return func(r Rows) (struct{}, error) {
			var k key
			var v int64
			err := r.Scan(&k.c, &k.s, &v)
			n[k] += sign * v
			return struct{}{}, err
		}
	}
	err := s.read(ctx, func(q Q) error {
		if _, err := query(ctx, q, scan(1), `SELECT control, state, count(*) FROM control_states GROUP BY control, state`); err != nil {
			return err
		}
		_, err := query(ctx, q, scan(-1), `SELECT cs.control, cs.state, count(*) FROM devices d
			JOIN control_states cs ON cs.device_id = d.id
			WHERE d.verdict = 'REVOKED' GROUP BY cs.control, cs.state`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count by control: %w", err)
	}
	var out []store.ControlCount
	for k, v := range n {
		if v > 0 {
			out = append(out, store.ControlCount{Control: k.c, State: mamoriv1.ControlState(k.s), N: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Control != out[j].Control {
			return out[i].Control < out[j].Control
		}
		return out[i].State < out[j].State
	})
	return out, nil
}

// SearchTerms finds devices by a term prefix, on the primary key.
func (s *Store) SearchTerms(ctx context.Context, kind, prefix string, limit int) ([]store.TermHit, error) {
	out, err := list(ctx, s, func(r Rows) (store.TermHit, error) {
		var h store.TermHit
		var at int64
		err := r.Scan(&h.Term, &h.DeviceID, &h.Hostname, &at)
		h.LastAt = codec.FromMicros(at, true)
		return h, err
	}, `SELECT t.term, t.device_id, d.hostname, t.last_at FROM search_terms t
		JOIN devices d ON d.id = t.device_id
		WHERE t.kind = ? AND t.term >= ? AND t.term < ?
		ORDER BY t.term, t.device_id LIMIT ?`, kind, prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", kind, err)
	}
	return out, nil
}

// HistoryForDevices returns the history of ids up to until.
func (s *Store) HistoryForDevices(ctx context.Context, ids []string, until time.Time) ([]store.HistoryEntry, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(ids)+1)
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, s.d.Native(until))
	out, err := list(ctx, s, scanHistory, `SELECT device_id, control, from_state, to_state, detail, at FROM control_history
		WHERE device_id IN (`+in(len(ids))+`) AND at <= ?
		ORDER BY device_id, at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("history of %d devices: %w", len(ids), err)
	}
	return out, nil
}

func scanHistory(r Rows) (store.HistoryEntry, error) {
	var h store.HistoryEntry
	var from, to int32
	var at Time
	err := r.Scan(&h.DeviceID, &h.Control, &from, &to, &h.Detail, &at)
	h.From, h.To, h.At = mamoriv1.ControlState(from), mamoriv1.ControlState(to), at.T
	return h, err
}

const incidentCols = `i.id, i.rule, i.device_id, coalesce(d.hostname, ''), i.episode, i.state, i.summary, i.occurrences,
	i.opened_at, i.last_at, i.escalated_at, i.acked_at, i.acked_by, i.ack_note, i.closed_at, i.closed_by, i.close_note, i.summary_msg`

func scanIncident(r Rows) (store.Incident, error) {
	var (
		in                         store.Incident
		opened, last               int64
		escalated, acked, closedAt sql.NullInt64
		msg                        string
	)
	err := r.Scan(&in.ID, &in.Rule, &in.DeviceID, &in.Hostname, &in.Episode, &in.State, &in.Summary, &in.Occurrences,
		&opened, &last, &escalated, &acked, &in.AckedBy, &in.AckNote, &closedAt, &in.ClosedBy, &in.CloseNote, &msg)
	in.SummaryMsg = store.DecodeIncidentMsg(msg)
	in.OpenedAt, in.LastAt = codec.FromMicros(opened, true), codec.FromMicros(last, true)
	in.EscalatedAt = codec.FromMicros(escalated.Int64, escalated.Valid)
	in.AckedAt = codec.FromMicros(acked.Int64, acked.Valid)
	in.ClosedAt = codec.FromMicros(closedAt.Int64, closedAt.Valid)
	return in, err
}

// Incidents lists incidents, newest first.
func (s *Store) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	q := `SELECT ` + incidentCols + ` FROM incidents i LEFT JOIN devices d ON d.id = i.device_id WHERE TRUE`
	var args []any
	switch f.State {
	case "":
	case "active":
		q += " AND i.state <> 'closed'"
	default:
		q += " AND i.state = ?"
		args = append(args, f.State)
	}
	if f.DeviceID != "" {
		q += " AND i.device_id = ?"
		args = append(args, f.DeviceID)
	}
	if f.BeforeID > 0 {
		q += " AND i.id < ?"
		args = append(args, f.BeforeID)
	}
	q += " ORDER BY i.id DESC LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	out, err := list(ctx, s, scanIncident, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

func getIncident(ctx context.Context, q Q, id int64) (store.Incident, error) {
	in, err := query(ctx, q, scanIncident, `SELECT `+incidentCols+` FROM incidents i LEFT JOIN devices d ON d.id = i.device_id WHERE i.id = ?`, id)
	if err != nil {
		return store.Incident{}, fmt.Errorf("incident %d: %w", id, err)
	}
	if len(in) == 0 {
		return store.Incident{}, fmt.Errorf("incident %d: %w", id, store.ErrNotFound)
	}
	return in[0], nil
}

// GetIncident returns one incident.
func (s *Store) GetIncident(ctx context.Context, id int64) (store.Incident, error) {
	var in store.Incident
	err := s.read(ctx, func(q Q) error {
		var err error
		in, err = getIncident(ctx, q, id)
		return err
	})
	return in, err
}

// TransitionIncident acknowledges or closes an incident.
func (s *Store) TransitionIncident(ctx context.Context, id int64, to, by, note string, at time.Time) (store.Incident, error) {
	var in store.Incident
	err := s.write(ctx, func(q Q) error {
		var n int64
		var err error
		switch to {
		case store.IncidentAcknowledged:
			n, err = q.Exec(ctx, `UPDATE incidents SET state = 'acknowledged', acked_at = ?, acked_by = ?, ack_note = ?
				WHERE id = ? AND state = 'open'`, at.UnixMicro(), by, note, id)
		case store.IncidentClosed:
			n, err = q.Exec(ctx, `UPDATE incidents SET state = 'closed', closed_at = ?, closed_by = ?, close_note = ?
				WHERE id = ? AND state <> 'closed'`, at.UnixMicro(), by, note, id)
		default:
			return fmt.Errorf("incident %d: cannot move to %q", id, to)
		}
		if err != nil {
			return fmt.Errorf("incident %d to %s: %w", id, to, err)
		}
		if in, err = getIncident(ctx, q, id); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("incident %d is %s: %w", id, in.State, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return store.Incident{}, err
	}
	return in, nil
}

// ClaimNotifications leases due notifications.
func (s *Store) ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Notification, error) {
	var out []store.Notification
	err := s.write(ctx, func(q Q) error {
		type claimed struct {
			n   store.Notification
			inc int64
		}
		// lease_until is checked again on the outer UPDATE: a concurrent
		// claimer that waited for the row lock sees the new lease and
		// skips the row (PostgreSQL re-checks the WHERE on the new row).
		cs, err := query(ctx, q, func(r Rows) (claimed, error) {
			var c claimed
			var created int64
			err := r.Scan(&c.n.ID, &c.n.Channel, &c.n.Kind, &c.n.Attempts, &created, &c.inc)
			c.n.CreatedAt = codec.FromMicros(created, true)
			return c, err
		}, `UPDATE notifications SET lease_until = ?, attempts = attempts + 1
			WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= ? AND lease_until <= ? ORDER BY id LIMIT ?)
			AND state = 'pending' AND lease_until <= ?
			RETURNING id, channel, kind, attempts, created_at, incident_id`,
			leaseUntil.UnixMicro(), now.UnixMicro(), now.UnixMicro(), codec.Limit(limit), now.UnixMicro())
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.n.Incident, err = getIncident(ctx, q, c.inc); err != nil {
				return err
			}
			out = append(out, c.n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	return out, nil
}

// FinishNotification records a delivery's outcome.
func (s *Store) FinishNotification(ctx context.Context, id int64, r store.NotificationOutcome) error {
	return s.write(ctx, func(q Q) error {
		var err error
		switch r.State {
		case store.NotifyPending:
			_, err = q.Exec(ctx, `UPDATE notifications SET next_at = ?, lease_until = 0, last_error = ? WHERE id = ?`,
				r.NextAt.UnixMicro(), r.Error, id)
		case store.NotifySent, store.NotifyFailed, store.NotifySuppressed:
			_, err = q.Exec(ctx, `UPDATE notifications SET state = ?, sent_at = ?, last_error = ? WHERE id = ?`,
				r.State, micros(r.At), r.Error, id)
		default:
			return fmt.Errorf("notification %d: unknown state %q", id, r.State)
		}
		if err != nil {
			return fmt.Errorf("finish notification %d: %w", id, err)
		}
		return nil
	})
}

// CountSent counts a channel's deliveries since a time.
func (s *Store) CountSent(ctx context.Context, channel string, since time.Time) (int, error) {
	n, err := list(ctx, s, func(r Rows) (int, error) {
		var v int
		return v, r.Scan(&v)
	}, `SELECT count(*) FROM notifications WHERE channel = ? AND sent_at >= ? AND state = 'sent'`, channel, since.UnixMicro())
	if err != nil || len(n) == 0 {
		return 0, fmt.Errorf("count sent: %w", err)
	}
	return n[0], nil
}
