package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/evsql"
	"github.com/mamori-dev/mamori/server/store/internal/sharedsql"
)

// The evidence, incident and operator-admin methods are shared with
// PostgreSQL (server/store/internal/evsql), and so are the MFA, exception
// and console-login ones (server/store/internal/sharedsql); this is
// SQLite's adapter for both.

type evDB struct{ s *Store }

type evQ struct {
	q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
}

func (e evQ) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := e.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

type evRows struct{ *sql.Rows }

func (r evRows) Close() { r.Rows.Close() }

func (e evQ) Query(ctx context.Context, q string, args ...any) (evsql.Rows, error) {
	rows, err := e.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return evRows{rows}, nil
}

func (d evDB) Read(ctx context.Context, fn func(evsql.Q) error) error { return fn(evQ{d.s.r}) }
func (d evDB) Write(ctx context.Context, fn func(evsql.Q) error) error {
	return d.s.write(ctx, func(tx *sql.Tx) error { return fn(evQ{tx}) })
}
func (evDB) Native(t time.Time) any { return codec.Micros(t) }

// Auto: SQLite writes only on its one writer, in a transaction.
func (d evDB) Auto(ctx context.Context, fn func(evsql.Q) error) error { return d.Write(ctx, fn) }

// Stamp keeps the zero time as its (negative) microseconds, not NULL.
func (evDB) Stamp(t time.Time) any { return codec.Time(t).UnixMicro() }

func (evDB) IsUnique(err error) bool { return isUnique(err) }

// ForUpdate: the one writer runs write transactions one at a time; there
// is no row lock to take.
func (evDB) ForUpdate(string) string { return "" }

func (evDB) AppendAudit(ctx context.Context, q evsql.Q, r store.AuditRecord) error {
	tx, ok := q.(evQ).q.(*sql.Tx)
	if !ok {
		return errors.New("append audit: not inside a write transaction")
	}
	_, err := appendAuditTx(ctx, tx, r)
	return err
}

// WatchLock: SQLite has one writer; nothing to take.
func (evDB) WatchLock(context.Context, evsql.Q) error { return nil }

// HighWater: with one writer, every row visible is committed in order.
func (evDB) HighWater(context.Context) (int64, int64, error) { return 1<<63 - 1, 1<<63 - 1, nil }

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
