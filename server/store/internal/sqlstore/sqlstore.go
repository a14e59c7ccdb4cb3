// Package sqlstore implements store.Store once for SQLite and PostgreSQL.
// Every query is written once, with '?' placeholders; what the two
// databases do differently goes through a Dialect, which each backend
// (server/store/sqlite, server/store/postgres) supplies together with its
// connections. The idea is dex's storage/sql "flavors"; the hooks are:
//
//   - connections and transactions (Read, Write, Auto), which also
//     rewrite the placeholders ($1, $2… on PostgreSQL);
//   - time arguments: the older tables (devices, events, control_history,
//     operators, the console, MFA and exception tables) keep native times,
//     INTEGER microseconds on SQLite and timestamptz on PostgreSQL (Native,
//     Stamp); the evidence tables (migration 0008) keep integer
//     microseconds on both. Time scans either;
//   - the unique-violation test (IsUnique);
//   - row locks and cross-server serialisation: PostgreSQL locks rows
//     (ForUpdate) and takes advisory locks; SQLite, whose one writer runs
//     the write transactions one at a time, needs neither.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// Q runs statements written with '?' placeholders.
type Q interface {
	Exec(ctx context.Context, q string, args ...any) (int64, error)
	Query(ctx context.Context, q string, args ...any) (Rows, error)
}

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Dialect is what one database does its own way.
type Dialect interface {
	// Read runs fn on a reading connection; Write in one transaction,
	// which also appends an audited action's record (store.ClaimAudit).
	Read(ctx context.Context, fn func(Q) error) error
	Write(ctx context.Context, fn func(Q) error) error
	// Auto runs fn's statements each in a transaction of its own where
	// the backend can (PostgreSQL's pool: no BEGIN/COMMIT round trips, no
	// audit record claimed); SQLite writes only on its one writer, so
	// there it is Write.
	Auto(ctx context.Context, fn func(Q) error) error
	// Native is a time argument for a nullable time column of the older
	// tables: nil for the zero time.
	Native(t time.Time) any
	// Stamp is a time argument for a NOT NULL time column: as Native, but
	// the zero time is stored as itself (year 1), not as NULL.
	Stamp(t time.Time) any
	// IsUnique reports whether err is a unique or primary key violation.
	IsUnique(err error) bool
	// ForUpdate ends a SELECT inside Write that reads rows to write them
	// back: " FOR UPDATE" (" FOR UPDATE OF of" when of names a table or
	// alias) on PostgreSQL; "" on SQLite, whose one writer runs the
	// transactions one at a time.
	ForUpdate(of string) string
	// WatchLock serialises watcher steps across servers (inside Write).
	WatchLock(ctx context.Context, q Q) error
	// HighWater returns the highest events.seq and control_history.id
	// below which every row is committed (PostgreSQL hands out sequence
	// numbers before commit, so a later commit can carry a lower one).
	HighWater(ctx context.Context) (events, history int64, err error)
	// AppendAudit appends r to the audit hash chain inside the transaction
	// q belongs to (q from Write).
	AppendAudit(ctx context.Context, q Q, r store.AuditRecord) error
}

// Store is store.Store over a Dialect, but for Close, which is the
// backend's.
type Store struct{ d Dialect }

// New returns the store over d.
func New(d Dialect) *Store { return &Store{d: d} }

// Time scans a native or microsecond time column, NULL included.
type Time struct{ T time.Time }

// Scan implements sql.Scanner for both drivers.
func (t *Time) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		t.T = time.Time{}
	case int64:
		t.T = codec.FromMicros(v, true)
	case time.Time:
		t.T = codec.Time(v)
	default:
		return fmt.Errorf("scan time from %T", src)
	}
	return nil
}

// micros is a time argument for the evidence tables' microsecond columns.
func micros(t time.Time) any { return codec.Micros(t) }

// query runs sqlText on q and scans every row with scan.
func query[T any](ctx context.Context, q Q, scan func(Rows) (T, error), sqlText string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// errNoRows is a queryRow that found no row.
var errNoRows = errors.New("no rows in result set")

// row is the first row of a query, as sql.Row and pgx.Row are.
type row struct {
	rows Rows
	err  error
}

func queryRow(ctx context.Context, q Q, sqlText string, args ...any) row {
	rows, err := q.Query(ctx, sqlText, args...)
	return row{rows, err}
}

// Scan scans the first row into dest, or returns errNoRows.
func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return errNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Err()
}

// in is "?, ?, …" for n arguments.
func in(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }
