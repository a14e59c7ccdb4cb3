// Package sqlstore implements store.Store once for SQLite and PostgreSQL.
// Every query is written once, with '?' placeholders; what the two
// databases do differently goes through a Dialect, which each backend
// (server/store/sqlite, server/store/postgres) supplies together with its
// connections. The idea is dex's storage/sql "flavors"; the hooks are:
//
//   - connections and transactions (Read, Tx, Autocommit), whose Q also
//     rewrites the placeholders ($1, $2… on PostgreSQL);
//   - time arguments: the older tables (devices, events, control_history,
//     operators, the console, MFA and exception tables) keep native times,
//     INTEGER microseconds on SQLite and timestamptz on PostgreSQL (Native,
//     Stamp); the evidence tables (migration 0008) keep integer
//     microseconds on both. Time scans either. TimeCast and AnyOf are the
//     two places where PostgreSQL's types show in the SQL text;
//   - the unique-violation test (IsUnique);
//   - row locks and cross-server serialisation: PostgreSQL locks rows
//     (ForUpdate), takes advisory locks (Lock) and hands out sequence
//     numbers before commit (HighWater); SQLite, whose one writer runs
//     the write transactions one at a time, needs none of it;
//   - bulk writes, where each database has its own fastest way: the
//     report batch (WriteBatch) and the asset ledger (CopyRows).
//
// The decisions (which report is accepted, what a token allows) are not
// here but in internal/rules; the encodings of columns in internal/codec.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/rules"
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
	// Read runs fn on the connections for reading.
	Read(ctx context.Context, fn func(Q) error) error
	// Tx runs fn in one write transaction and commits it when fn returns
	// nil; an error from fn, or a failed commit, rolls it back.
	Tx(ctx context.Context, fn func(Q) error) error
	// Autocommit is a Q whose statements commit each on its own (no
	// BEGIN/COMMIT round trips, no audit record claimed), or nil where
	// the backend writes only in transactions (SQLite's one writer).
	Autocommit() Q

	// Native is a time argument for a nullable time column of the older
	// tables: nil for the zero time.
	Native(t time.Time) any
	// Stamp is a time argument for a NOT NULL time column: as Native, but
	// the zero time is stored as itself (year 1), not as NULL.
	Stamp(t time.Time) any
	// TimeCast follows a time placeholder whose type the database cannot
	// infer from its place (the branches of a CASE): "::timestamptz" on
	// PostgreSQL, "" on SQLite, whose columns take any type.
	TimeCast() string
	// AnyOf is the condition "column is one of vals" and its arguments:
	// one array argument on PostgreSQL, a list of placeholders on SQLite,
	// which has no array type (so at most anyOfChunk values).
	AnyOf(column string, vals []string) (cond string, args []any)

	// IsUnique reports whether err is a unique or primary key violation.
	IsUnique(err error) bool

	// ForUpdate ends a SELECT inside a write transaction that reads rows
	// to write them back (never their keys): " FOR NO KEY UPDATE" (" FOR
	// NO KEY UPDATE OF of" when of names a table or alias) on PostgreSQL,
	// which leaves inserts of rows referencing them free (see the
	// PostgreSQL dialect); "" on SQLite, whose one writer runs the
	// transactions one at a time.
	ForUpdate(of string) string
	// Lock serialises, until the transaction q belongs to ends, the
	// writers of what l names across every server on the database
	// (PostgreSQL: an advisory lock); SQLite's one writer already does.
	Lock(ctx context.Context, q Q, l Lock) error
	// HighWater returns the highest events.seq and control_history.id
	// below which every row is committed (PostgreSQL hands out sequence
	// numbers before commit, so a later commit can carry a lower one).
	HighWater(ctx context.Context) (events, history int64, err error)

	// WriteBatch writes a planned report batch (rules.Batch: device
	// updates, history rows, events, calling b.Inserted for each new
	// event) the way the backend writes many rows fastest.
	WriteBatch(ctx context.Context, q Q, b *rules.Batch) error
	// CopyRows inserts rows into table's columns cols, as fast as the
	// backend can (PostgreSQL: COPY).
	CopyRows(ctx context.Context, q Q, table string, cols []string, rows [][]any) error
}

// Lock names a chain of writes that must not interleave across servers.
// The values are PostgreSQL advisory lock keys, arbitrary but fixed.
type Lock int64

const (
	// LockAudit: reading the audit chain's tail and appending to it.
	LockAudit Lock = 0x6d616d6f_72690002
	// LockWatch: one watcher step at a time.
	LockWatch Lock = 0x6d616d6f_72690008
)

// anyOfChunk bounds the values of one AnyOf (SQLite allows 32766
// arguments in a statement, PostgreSQL 65535).
const anyOfChunk = 500

// Store is store.Store over a Dialect, but for Close, which is the
// backend's.
type Store struct{ d Dialect }

// New returns the store over d.
func New(d Dialect) *Store { return &Store{d: d} }

// read runs fn on the connections for reading.
func (s *Store) read(ctx context.Context, fn func(Q) error) error { return s.d.Read(ctx, fn) }

// write runs fn in one write transaction. An audited action's record
// (store.WithAudit) is appended in the same transaction, so the two
// commit together or not at all.
func (s *Store) write(ctx context.Context, fn func(Q) error) error {
	var done func(stored store.AuditRecord, ok bool)
	var stored store.AuditRecord
	err := s.d.Tx(ctx, func(q Q) error {
		if err := fn(q); err != nil {
			return err
		}
		rec, finish, ok := store.ClaimAudit(ctx)
		if !ok {
			return nil
		}
		var err error
		if stored, err = s.appendAudit(ctx, q, rec); err != nil {
			finish(stored, false)
			return err
		}
		done = finish
		return nil
	})
	if done != nil {
		done(stored, err == nil)
	}
	return err
}

// auto runs fn's statements each in a transaction of its own where the
// backend can (see Dialect.Autocommit), and in one write transaction
// where it cannot.
func (s *Store) auto(ctx context.Context, fn func(Q) error) error {
	if q := s.d.Autocommit(); q != nil {
		return fn(q)
	}
	return s.write(ctx, fn)
}

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

// list runs sqlText on the connections for reading and scans every row
// with scan.
func list[T any](ctx context.Context, s *Store, scan func(Rows) (T, error), sqlText string, args ...any) ([]T, error) {
	var out []T
	err := s.read(ctx, func(q Q) error {
		var err error
		out, err = query(ctx, q, scan, sqlText, args...)
		return err
	})
	return out, err
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
