package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/evsql"
	"github.com/mamori-dev/mamori/server/store/internal/sharedsql"
)

// The evidence, incident and operator-admin methods are shared with
// SQLite (server/store/internal/evsql), and so are the MFA, exception and
// console-login ones (server/store/internal/sharedsql); this is
// PostgreSQL's adapter for both.

// lockWatch serialises watcher steps of all servers on one database.
const lockWatch int64 = 0x6d616d6f_72690008

type evDB struct{ s *Store }

type evQ struct {
	exec  func(ctx context.Context, sql string, args ...any) (int64, error)
	query func(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	tx    pgx.Tx // inside Write; nil on the pool
}

// dollar rewrites '?' placeholders to $1, $2…
func dollar(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (e evQ) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return e.exec(ctx, dollar(q), args...)
}

type evRows struct{ pgx.Rows }

func (r evRows) Close() { r.Rows.Close() }

func (e evQ) Query(ctx context.Context, q string, args ...any) (evsql.Rows, error) {
	rows, err := e.query(ctx, dollar(q), args...)
	if err != nil {
		return nil, err
	}
	return evRows{rows}, nil
}

func txQ(tx pgx.Tx) evQ {
	return evQ{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := tx.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: tx.Query,
		tx:    tx,
	}
}

func (d evDB) Read(ctx context.Context, fn func(evsql.Q) error) error {
	return fn(evQ{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := d.s.pool.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: d.s.pool.Query,
	})
}

func (d evDB) Write(ctx context.Context, fn func(evsql.Q) error) error {
	return d.s.write(ctx, func(tx pgx.Tx) error { return fn(txQ(tx)) })
}

func (evDB) Native(t time.Time) any { return tz(t) }

// Auto runs fn on the pool (Read's Q writes too): each statement commits
// on its own.
func (d evDB) Auto(ctx context.Context, fn func(evsql.Q) error) error { return d.Read(ctx, fn) }

// Stamp keeps the zero time as year 1, not NULL.
func (evDB) Stamp(t time.Time) any { return codec.Time(t) }

func (evDB) IsUnique(err error) bool { return isUnique(err) }

func (evDB) ForUpdate(of string) string {
	if of == "" {
		return " FOR UPDATE"
	}
	return " FOR UPDATE OF " + of
}

func (evDB) AppendAudit(ctx context.Context, q evsql.Q, r store.AuditRecord) error {
	tx := q.(evQ).tx
	if tx == nil {
		return errors.New("append audit: not inside a write transaction")
	}
	_, err := appendAuditTx(ctx, tx, r)
	return err
}

func (evDB) WatchLock(ctx context.Context, q evsql.Q) error {
	_, err := q.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", lockWatch)
	return err
}

// HighWater waits for the report transactions in flight (a SHARE lock
// conflicts with their inserts) and reads the highest sequence numbers:
// every row at or below them is committed, so a cursor never skips a row
// that commits late with a lower number. The lock is held for two index
// reads.
func (d evDB) HighWater(ctx context.Context) (ev, hist int64, err error) {
	err = d.s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE events, control_history IN SHARE MODE"); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT (SELECT coalesce(max(seq), 0) FROM events), (SELECT coalesce(max(id), 0) FROM control_history)").Scan(&ev, &hist)
	})
	return ev, hist, err
}

func (s *Store) ev() evsql.Store { return evsql.Store{DB: evDB{s}} }

func (s *Store) sh() sharedsql.Store { return sharedsql.Store{DB: evDB{s}} }

var _ store.Evidence = (*Store)(nil)

func (s *Store) PutDailySnapshot(ctx context.Context, d store.DailySnapshot) error {
	return s.ev().PutDailySnapshot(ctx, d)
}
func (s *Store) DailySnapshots(ctx context.Context, from, to string) ([]store.DailySnapshot, error) {
	return s.ev().DailySnapshots(ctx, from, to)
}
func (s *Store) CountByControl(ctx context.Context) ([]store.ControlCount, error) {
	return s.ev().CountByControl(ctx)
}
func (s *Store) SearchTerms(ctx context.Context, kind, prefix string, limit int) ([]store.TermHit, error) {
	return s.ev().SearchTerms(ctx, kind, prefix, limit)
}
func (s *Store) HistoryForDevices(ctx context.Context, ids []string, until time.Time) ([]store.HistoryEntry, error) {
	return s.ev().HistoryForDevices(ctx, ids, until)
}
func (s *Store) Watch(ctx context.Context, p store.WatchParams, j store.Judge) (store.WatchResult, error) {
	return s.ev().Watch(ctx, p, j)
}
func (s *Store) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	return s.ev().Incidents(ctx, f)
}
func (s *Store) GetIncident(ctx context.Context, id int64) (store.Incident, error) {
	return s.ev().GetIncident(ctx, id)
}
func (s *Store) TransitionIncident(ctx context.Context, id int64, to, by, note string, at time.Time) (store.Incident, error) {
	return s.ev().TransitionIncident(ctx, id, to, by, note, at)
}
func (s *Store) ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Notification, error) {
	return s.ev().ClaimNotifications(ctx, now, leaseUntil, limit)
}
func (s *Store) FinishNotification(ctx context.Context, id int64, r store.NotificationOutcome) error {
	return s.ev().FinishNotification(ctx, id, r)
}
func (s *Store) CountSent(ctx context.Context, channel string, since time.Time) (int, error) {
	return s.ev().CountSent(ctx, channel, since)
}
func (s *Store) ListOperators(ctx context.Context) ([]store.OperatorAccount, error) {
	return s.ev().ListOperators(ctx)
}
func (s *Store) DisableOperator(ctx context.Context, id string, at time.Time) error {
	return s.ev().DisableOperator(ctx, id, at)
}
func (s *Store) EndSessions(ctx context.Context, operatorID string) error {
	return s.ev().EndSessions(ctx, operatorID)
}
func (s *Store) ResetLockout(ctx context.Context, id string, at time.Time) error {
	return s.ev().ResetLockout(ctx, id, at)
}
