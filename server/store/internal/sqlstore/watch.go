package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/mamori-dev/mamori/internal/textsafe"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// Cursor names in watch_cursors.
const (
	curEvents         = "events_seq"
	curHistory        = "history_id"
	curFailing        = "failing_at"
	curSilent         = "silent_at"
	curEnrolled       = "enrolled_at"
	curEnrollFailures = "enroll_failures_at"
)

// firstSilentLookback bounds the first silent sweep: a fresh watcher does
// not open an incident for every terminal that went quiet years ago.
const firstSilentLookback = 24 * time.Hour

// Watch runs one watcher step in one transaction: the sweeps read what
// was stored since their cursors into a batch, judge turns the batch into
// search terms and signals, and the step applies them, escalates, audits
// what it opened and escalated, and moves the cursors. Each sweep also
// computes where its cursor goes, so a step that commits never skips a
// row and a step that fails moves nothing.
func (s *Store) Watch(ctx context.Context, p store.WatchParams, judge store.Judge) (store.WatchResult, error) {
	if p.Now.IsZero() || p.Limit <= 0 {
		return store.WatchResult{}, fmt.Errorf("watch: a time and a limit are required")
	}
	evHigh, hiHigh, err := s.d.HighWater(ctx)
	if err != nil {
		return store.WatchResult{}, fmt.Errorf("watch: high water: %w", err)
	}
	var res store.WatchResult
	err = s.write(ctx, func(q Q) error {
		if err := s.d.Lock(ctx, q, LockWatch); err != nil {
			return fmt.Errorf("watch lock: %w", err)
		}
		cur, err := readCursors(ctx, q)
		if err != nil {
			return err
		}
		w := &watchStep{s: s, q: q, p: p, cur: cur, next: map[string]int64{}}
		b := store.WatchBatch{Now: p.Now}
		if b.Events, b.History, err = w.sweepStored(ctx, evHigh, hiHigh); err != nil {
			return err
		}
		if b.Failing, err = w.sweepFailing(ctx); err != nil {
			return err
		}
		if b.Silent, err = w.sweepSilent(ctx); err != nil {
			return err
		}
		if b.Enrolled, err = w.sweepEnrolled(ctx); err != nil {
			return err
		}
		if b.EnrollFailures, err = w.sweepEnrollFailures(ctx); err != nil {
			return err
		}
		terms, signals, err := judge(b)
		if err != nil {
			return err
		}
		if err := w.apply(ctx, b.History, terms, signals); err != nil {
			return err
		}
		if err := w.sweepEscalations(ctx); err != nil {
			return err
		}
		if err := s.auditStep(ctx, q, p.Now, &w.res); err != nil {
			return err
		}
		if err := w.pruneMarks(ctx); err != nil {
			return err
		}
		if err := w.saveCursors(ctx); err != nil {
			return err
		}
		w.res.Events, w.res.History = len(b.Events), len(b.History)
		res = w.res
		return nil
	})
	if err != nil {
		return store.WatchResult{}, err
	}
	return res, nil
}

// watchStep is one Watch inside its transaction: the cursors as read
// (cur) and as they will be saved (next), and the result so far.
type watchStep struct {
	s         *Store
	q         Q
	p         store.WatchParams
	cur, next map[string]int64
	res       store.WatchResult
}

// since is where the device sweep of cursor name starts: the cursor less
// the margin (a row committed late by another server is read again), or
// first when the sweep never ran.
func (w *watchStep) since(name string, first time.Time) time.Time {
	v, ok := w.cur[name]
	if !ok {
		return first
	}
	return time.UnixMicro(v).Add(-w.p.Margin)
}

// advance moves the cursor of a device sweep that read ms: to cut when
// the sweep read everything before it, or only as far as a full page read
// (plus the margin, which the next step reads again) and asks for more.
func (w *watchStep) advance(name string, cut time.Time, ms []store.DeviceMark) {
	w.next[name] = cut.UnixMicro()
	if len(ms) == w.p.Limit {
		w.next[name] = ms[len(ms)-1].At.UnixMicro() + int64(w.p.Margin/time.Microsecond) + 1
		w.res.More = true
	}
}

// sweepStored reads the events and history rows stored after their
// cursors, up to the high-water marks (rows below them are committed).
func (w *watchStep) sweepStored(ctx context.Context, evHigh, hiHigh int64) ([]store.StoredEvent, []store.HistoryRow, error) {
	evs, err := query(ctx, w.q, scanEvent, `SELECT seq, device_id, event, received_at FROM events
		WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`, w.cur[curEvents], evHigh, w.p.Limit)
	if err != nil {
		return nil, nil, fmt.Errorf("watch: events: %w", err)
	}
	hist, err := query(ctx, w.q, func(r Rows) (store.HistoryRow, error) {
		var h store.HistoryRow
		var from, to int32
		var at Time
		err := r.Scan(&h.ID, &h.DeviceID, &h.Control, &from, &to, &h.Detail, &at)
		h.From, h.To, h.At = mamoriv1.ControlState(from), mamoriv1.ControlState(to), at.T
		return h, err
	}, `SELECT id, device_id, control, from_state, to_state, detail, at FROM control_history
		WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`, w.cur[curHistory], hiHigh, w.p.Limit)
	if err != nil {
		return nil, nil, fmt.Errorf("watch: history: %w", err)
	}
	if n := len(evs); n > 0 {
		w.next[curEvents] = evs[n-1].Seq
	}
	if n := len(hist); n > 0 {
		w.next[curHistory] = hist[n-1].ID
	}
	if len(evs) == w.p.Limit || len(hist) == w.p.Limit {
		w.res.More = true
	}
	return evs, hist, nil
}

func scanMark(r Rows) (store.DeviceMark, error) {
	var m store.DeviceMark
	var at Time
	err := r.Scan(&m.DeviceID, &at)
	m.At = at.T
	return m, err
}

// sweepFailing reads the devices NONCOMPLIANT since the cursor.
func (w *watchStep) sweepFailing(ctx context.Context) ([]store.DeviceMark, error) {
	ms, err := query(ctx, w.q, scanMark, `SELECT id, failing_since FROM devices
		WHERE verdict = 'NONCOMPLIANT' AND failing_since >= ? ORDER BY failing_since LIMIT ?`,
		w.s.d.Native(w.since(curFailing, time.Unix(0, 0))), w.p.Limit)
	if err != nil {
		return nil, fmt.Errorf("watch: failing devices: %w", err)
	}
	w.advance(curFailing, w.p.Now, ms)
	return ms, nil
}

// sweepSilent reads the reporting devices that went silent: one sweep
// for the devices under the base cut-off (the groups with their own are
// left out), one per such group, each with a cursor of its own.
func (w *watchStep) sweepSilent(ctx context.Context) ([]store.DeviceMark, error) {
	groups := make([]string, 0, len(w.p.SilentGroups))
	for g := range w.p.SilentGroups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var out []store.DeviceMark
	if !w.p.SilentBefore.IsZero() {
		cut := w.p.SilentBefore
		cond, args := "", []any{w.s.d.Native(cut), w.s.d.Native(w.since(curSilent, cut.Add(-firstSilentLookback)))}
		if len(groups) > 0 {
			cond = " AND device_group NOT IN (" + in(len(groups)) + ")"
			for _, g := range groups {
				args = append(args, g)
			}
		}
		ms, err := query(ctx, w.q, scanMark, `SELECT id, last_seen FROM devices
			WHERE verdict IN ('COMPLIANT', 'NONCOMPLIANT') AND last_seen < ? AND last_seen >= ?`+cond+` ORDER BY last_seen LIMIT ?`,
			append(args, w.p.Limit)...)
		if err != nil {
			return nil, fmt.Errorf("watch: silent devices: %w", err)
		}
		out = append(out, ms...)
		w.advance(curSilent, cut, ms)
	}
	for _, g := range groups {
		cut, name := w.p.SilentGroups[g], curSilent+":"+g
		ms, err := query(ctx, w.q, scanMark, `SELECT id, last_seen FROM devices
			WHERE verdict IN ('COMPLIANT', 'NONCOMPLIANT') AND device_group = ? AND last_seen < ? AND last_seen >= ? ORDER BY last_seen LIMIT ?`,
			g, w.s.d.Native(cut), w.s.d.Native(w.since(name, cut.Add(-firstSilentLookback))), w.p.Limit)
		if err != nil {
			return nil, fmt.Errorf("watch: silent devices of group %q: %w", g, err)
		}
		out = append(out, ms...)
		w.advance(name, cut, ms)
	}
	return out, nil
}

// sweepEnrolled reads the devices (re-)enrolled since the cursor, with
// their facts.
func (w *watchStep) sweepEnrolled(ctx context.Context) ([]store.Device, error) {
	ds, err := query(ctx, w.q, func(r Rows) (store.Device, error) {
		var d store.Device
		var facts []byte
		var at Time
		if err := r.Scan(&d.ID, &facts, &at); err != nil {
			return d, err
		}
		d.EnrolledAt = at.T
		var err error
		d.Facts, err = codec.Facts(facts)
		return d, err
	}, `SELECT id, facts, enrolled_at FROM devices WHERE enrolled_at >= ? ORDER BY enrolled_at LIMIT ?`,
		w.s.d.Native(w.since(curEnrolled, time.Unix(0, 0))), w.p.Limit)
	if err != nil {
		return nil, fmt.Errorf("watch: enrolled devices: %w", err)
	}
	ms := make([]store.DeviceMark, len(ds))
	for i, d := range ds {
		ms[i] = store.DeviceMark{DeviceID: d.ID, At: d.EnrolledAt}
	}
	w.advance(curEnrolled, w.p.Now, ms)
	return ds, nil
}

// sweepEnrollFailures reads the enrolments refused for their token since
// the cursor (less the margin: a signal's Ref counts each row once).
func (w *watchStep) sweepEnrollFailures(ctx context.Context) ([]store.EnrollFailure, error) {
	fs, err := query(ctx, w.q, func(r Rows) (store.EnrollFailure, error) {
		var f store.EnrollFailure
		var at int64
		err := r.Scan(&f.ID, &f.Source, &at, &f.Reason)
		f.At = time.UnixMicro(at)
		return f, err
	}, `SELECT id, source, at, reason FROM enroll_failures WHERE at >= ? ORDER BY at, id LIMIT ?`,
		w.since(curEnrollFailures, w.p.Now.Add(-firstSilentLookback)).UnixMicro(), w.p.Limit)
	if err != nil {
		return nil, fmt.Errorf("watch: enrolment failures: %w", err)
	}
	ms := make([]store.DeviceMark, len(fs))
	for i, f := range fs {
		ms[i] = store.DeviceMark{DeviceID: f.Source, At: f.At}
	}
	w.advance(curEnrollFailures, w.p.Now, ms)
	return fs, nil
}

// apply writes what the batch and judge found: each history row's state
// as the control's latest (control_states), the search terms, and the
// signals, which open or bump incidents.
func (w *watchStep) apply(ctx context.Context, hist []store.HistoryRow, terms []store.SearchTerm, signals []store.Signal) error {
	for _, h := range hist {
		if _, err := w.q.Exec(ctx, `INSERT INTO control_states (device_id, control, state, history_id) VALUES (?, ?, ?, ?)
			ON CONFLICT (device_id, control) DO UPDATE SET state = excluded.state, history_id = excluded.history_id
			WHERE control_states.history_id < excluded.history_id`, h.DeviceID, h.Control, int32(h.To), h.ID); err != nil {
			return fmt.Errorf("watch: control state: %w", err)
		}
	}
	if err := w.writeTerms(ctx, terms); err != nil {
		return err
	}
	for _, sg := range signals {
		opened, bumped, err := w.s.signal(ctx, w.q, sg, w.p)
		if err != nil {
			return err
		}
		if opened != 0 {
			w.res.Opened++
			w.res.OpenedIDs = append(w.res.OpenedIDs, opened)
		}
		if bumped {
			w.res.Bumped++
		}
	}
	return nil
}

// writeTerms upserts one row per (kind, term, device) of the batch, at
// its latest sighting: a noisy terminal repeats the same user and stick.
func (w *watchStep) writeTerms(ctx context.Context, terms []store.SearchTerm) error {
	type termKey struct{ kind, term, dev string }
	latest := map[termKey]time.Time{}
	var order []termKey
	for _, t := range terms {
		if t.Term == "" {
			continue
		}
		k := termKey{t.Kind, t.Term, t.DeviceID}
		at, seen := latest[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || t.At.After(at) {
			latest[k] = t.At
		}
	}
	for _, k := range order {
		if _, err := w.q.Exec(ctx, `INSERT INTO search_terms (kind, term, device_id, last_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, term, device_id) DO UPDATE SET last_at = CASE WHEN excluded.last_at > search_terms.last_at
				THEN excluded.last_at ELSE search_terms.last_at END`, k.kind, k.term, k.dev, latest[k].UnixMicro()); err != nil {
			return fmt.Errorf("watch: search term: %w", err)
		}
	}
	return nil
}

// sweepEscalations escalates, once, the incidents still open (not
// acknowledged) that were opened before p.EscalateBefore, and notifies
// every channel.
func (w *watchStep) sweepEscalations(ctx context.Context) error {
	if w.p.EscalateBefore.IsZero() {
		return nil
	}
	ids, err := query(ctx, w.q, func(r Rows) (int64, error) {
		var id int64
		return id, r.Scan(&id)
	}, `SELECT id FROM incidents WHERE state = 'open' AND escalated_at IS NULL AND opened_at < ? ORDER BY id LIMIT ?`,
		w.p.EscalateBefore.UnixMicro(), w.p.Limit)
	if err != nil {
		return fmt.Errorf("watch: escalation: %w", err)
	}
	for _, id := range ids {
		if _, err := w.q.Exec(ctx, `UPDATE incidents SET escalated_at = ? WHERE id = ?`, w.p.Now.UnixMicro(), id); err != nil {
			return fmt.Errorf("watch: escalate %d: %w", id, err)
		}
		if err := enqueue(ctx, w.q, id, "escalate", w.p); err != nil {
			return err
		}
		w.res.Escalated++
		w.res.EscalatedIDs = append(w.res.EscalatedIDs, id)
	}
	return nil
}

// pruneMarks deletes the occurrence marks older than p.MarkHorizon.
func (w *watchStep) pruneMarks(ctx context.Context) error {
	if w.p.MarkHorizon.IsZero() {
		return nil
	}
	if _, err := w.q.Exec(ctx, `DELETE FROM incident_marks WHERE at < ?`, w.p.MarkHorizon.UnixMicro()); err != nil {
		return fmt.Errorf("watch: prune marks: %w", err)
	}
	// Enrolment failures were read (the cursor is past them) and counted
	// into marks; they go with the marks.
	if _, err := w.q.Exec(ctx, `DELETE FROM enroll_failures WHERE at < ?`, w.p.MarkHorizon.UnixMicro()); err != nil {
		return fmt.Errorf("watch: prune enrolment failures: %w", err)
	}
	return nil
}

// saveCursors stores where every sweep goes on from.
func (w *watchStep) saveCursors(ctx context.Context) error {
	for name, v := range w.next {
		if _, err := w.q.Exec(ctx, `INSERT INTO watch_cursors (name, value) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, v); err != nil {
			return fmt.Errorf("watch: cursor %s: %w", name, err)
		}
	}
	return nil
}

func readCursors(ctx context.Context, q Q) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT name, value FROM watch_cursors`)
	if err != nil {
		return nil, fmt.Errorf("watch: cursors: %w", err)
	}
	defer rows.Close()
	cur := map[string]int64{}
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			return nil, fmt.Errorf("watch: cursors: %w", err)
		}
		cur[n] = v
	}
	return cur, rows.Err()
}

func scanEvent(r Rows) (store.StoredEvent, error) {
	e, blob, err := scanEventRow(r)
	if err != nil {
		return e, err
	}
	if err := codec.Unmarshal(fmt.Sprintf("event %d", e.Seq), blob, e.Event); err != nil {
		// A damaged blob is skipped, not fatal: the watcher must move on.
		e.Event = &mamoriv1.Event{Kind: "undecodable"}
	}
	return e, nil
}

func one[T any](ctx context.Context, q Q, sqlText string, args ...any) (T, bool, error) {
	vs, err := query(ctx, q, func(r Rows) (T, error) {
		var v T
		return v, r.Scan(&v)
	}, sqlText, args...)
	var zero T
	if err != nil || len(vs) == 0 {
		return zero, false, err
	}
	return vs[0], true, nil
}

// signal applies one signal: count it, and open or bump the incident.
func (s *Store) signal(ctx context.Context, q Q, sg store.Signal, p store.WatchParams) (openedID int64, bumped bool, err error) {
	at := sg.At.UnixMicro()
	n := int64(1)
	if sg.Threshold > 1 {
		if _, err := q.Exec(ctx, `INSERT INTO incident_marks (rule, device_id, at, ref) VALUES (?, ?, ?, ?)
			ON CONFLICT (rule, device_id, ref) DO NOTHING`, sg.Rule, sg.DeviceID, at, sg.Ref); err != nil {
			return 0, false, fmt.Errorf("watch: mark: %w", err)
		}
		from := sg.At.Add(-sg.Window).UnixMicro()
		// Occurrences before the last close do not count again.
		lastClosed, _, err := one[sql.NullInt64](ctx, q, `SELECT max(closed_at) FROM incidents WHERE rule = ? AND device_id = ?`, sg.Rule, sg.DeviceID)
		if err != nil {
			return 0, false, fmt.Errorf("watch: last close: %w", err)
		}
		if lastClosed.Valid && lastClosed.Int64 >= from {
			from = lastClosed.Int64 + 1
		}
		n, _, err = one[int64](ctx, q, `SELECT count(*) FROM incident_marks WHERE rule = ? AND device_id = ? AND at >= ? AND at <= ?`,
			sg.Rule, sg.DeviceID, from, at)
		if err != nil {
			return 0, false, fmt.Errorf("watch: count marks: %w", err)
		}
		if n < int64(sg.Threshold) {
			return 0, false, nil
		}
	}
	if _, seen, err := one[int64](ctx, q, `SELECT id FROM incidents WHERE rule = ? AND device_id = ? AND episode = ?`,
		sg.Rule, sg.DeviceID, sg.Episode); err != nil || seen {
		return 0, false, err
	}
	id, open, err := one[int64](ctx, q, `SELECT id FROM incidents WHERE rule = ? AND device_id = ? AND state <> 'closed'`, sg.Rule, sg.DeviceID)
	if err != nil {
		return 0, false, fmt.Errorf("watch: open incident: %w", err)
	}
	if open {
		if _, err := q.Exec(ctx, `UPDATE incidents SET occurrences = occurrences + 1,
			last_at = CASE WHEN last_at < ? THEN ? ELSE last_at END WHERE id = ?`, at, at, id); err != nil {
			return 0, false, fmt.Errorf("watch: bump incident %d: %w", id, err)
		}
		return 0, true, nil
	}
	id, _, err = one[int64](ctx, q, `INSERT INTO incidents (rule, device_id, episode, state, summary, summary_msg, occurrences, opened_at, last_at)
		VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING id`, sg.Rule, sg.DeviceID, sg.Episode, sg.Summary, store.EncodeIncidentMsg(sg.SummaryMsg), n, p.Now.UnixMicro(), at)
	if err != nil {
		return 0, false, fmt.Errorf("watch: open incident: %w", err)
	}
	return id, false, enqueue(ctx, q, id, "open", p)
}

func enqueue(ctx context.Context, q Q, incident int64, kind string, p store.WatchParams) error {
	for _, ch := range p.Channels {
		if _, err := q.Exec(ctx, `INSERT INTO notifications (channel, incident_id, kind, created_at, state, next_at)
			VALUES (?, ?, ?, ?, 'pending', ?)`, ch, incident, kind, p.Now.UnixMicro(), p.Now.UnixMicro()); err != nil {
			return fmt.Errorf("watch: enqueue %s: %w", ch, err)
		}
	}
	return nil
}

// AuditPerStep bounds the per-incident audit records of one watcher step;
// a mass event (a network outage silencing thousands of terminals) is
// audited as a count beyond it.
const AuditPerStep = 200

// auditStep appends a record for each incident the step opened or
// escalated ("incident.open", "incident.escalate", actor system) in the
// step's own transaction: an incident is never opened without its record,
// nor recorded without being opened.
func (s *Store) auditStep(ctx context.Context, q Q, now time.Time, res *store.WatchResult) error {
	n := 0
	for _, x := range []struct {
		action string
		ids    []int64
	}{{"incident.open", res.OpenedIDs}, {"incident.escalate", res.EscalatedIDs}} {
		for _, id := range x.ids {
			if n == AuditPerStep {
				_, err := s.appendAudit(ctx, q, store.AuditRecord{At: now, Actor: "system", Action: "incident.detect",
					Detail: fmt.Sprintf("opened %d, escalated %d in this step; the first %d are audited one by one", res.Opened, res.Escalated, AuditPerStep)})
				return err
			}
			n++
			ins, err := query(ctx, q, func(r Rows) (string, error) {
				var rule, dev, summary string
				err := r.Scan(&rule, &dev, &summary)
				return rule + " " + dev + ": " + textsafe.OneLine(summary), err
			}, `SELECT rule, device_id, summary FROM incidents WHERE id = ?`, id)
			if err != nil {
				return fmt.Errorf("watch: audit incident %d: %w", id, err)
			}
			if len(ins) != 1 {
				return fmt.Errorf("watch: audit incident %d: not found in its own step", id)
			}
			if _, err := s.appendAudit(ctx, q, store.AuditRecord{At: now, Actor: "system", Action: x.action,
				Target: strconv.FormatInt(id, 10), Detail: ins[0]}); err != nil {
				return fmt.Errorf("watch: audit incident %d: %w", id, err)
			}
		}
	}
	return nil
}
