// Package sharedsql implements the MFA, exception and ledger, and console
// login parts of store.Store once for both backends, as evsql does for the
// evidence tables: one SQL text with '?' placeholders, two dialects.
//
// These tables are older than the evidence ones (migrations 0003, 0004,
// 0006, 0007) and keep native times: INTEGER microseconds on SQLite,
// timestamptz on PostgreSQL. What differs per dialect goes through DB,
// which each backend's evsql adapter (evDB) also implements: connections
// and transactions, time arguments (Native, Stamp; evsql.Time scans both),
// the unique-violation test, and PostgreSQL's row locks, which SQLite,
// with its one writer, does without.
package sharedsql

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store/internal/evsql"
)

// DB is a backend: the parts of evsql.DB these tables use, and the
// dialect hooks they need besides.
type DB interface {
	// Read runs fn on a reading connection; Write in one transaction,
	// which also appends an audited action's record (store.ClaimAudit).
	Read(ctx context.Context, fn func(evsql.Q) error) error
	Write(ctx context.Context, fn func(evsql.Q) error) error
	// Auto runs fn's statements each in a transaction of its own where
	// the backend can (PostgreSQL's pool: no BEGIN/COMMIT round trips, no
	// audit record claimed); SQLite writes only on its one writer, so
	// there it is Write.
	Auto(ctx context.Context, fn func(evsql.Q) error) error
	// Native is a time argument for a nullable time column: nil for the
	// zero time.
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
}

// Store implements the MFA, exception, ledger and console-login methods of
// store.Store over a DB.
type Store struct{ DB DB }

// errNoRows is a queryRow that found no row.
var errNoRows = errors.New("no rows in result set")

// row is the first row of a query, as sql.Row and pgx.Row are.
type row struct {
	rows evsql.Rows
	err  error
}

func queryRow(ctx context.Context, q evsql.Q, sqlText string, args ...any) row {
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
