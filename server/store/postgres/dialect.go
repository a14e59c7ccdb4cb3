package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// dialect is PostgreSQL's sqlstore.Dialect: $n placeholders, timestamptz
// for the older tables' times, and several servers on one database, so
// row locks (FOR UPDATE), advisory locks and a high-water mark for
// sequence numbers handed out before commit.
type dialect struct{ s *Store }

// conn is a sqlstore.Q on the pool or on a transaction.
type conn struct {
	exec  func(ctx context.Context, sql string, args ...any) (int64, error)
	query func(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	tx    pgx.Tx // inside Tx; nil on the pool
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

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return c.exec(ctx, dollar(q), args...)
}

type connRows struct{ pgx.Rows }

func (r connRows) Close() { r.Rows.Close() }

// Scan scans the row, with every *sqlstore.Time destination decoded by
// pgx straight into it (pgTime): through sqlstore.Time's sql.Scanner, pgx
// would box each value first, an allocation per time (a device row has
// four). dest is the caller's argument list, changed in place so that
// no copy is allocated either.
func (r connRows) Scan(dest ...any) error {
	for i, d := range dest {
		if t, ok := d.(*sqlstore.Time); ok {
			dest[i] = (*pgTime)(t)
		}
	}
	return r.Rows.Scan(dest...)
}

// pgTime is a sqlstore.Time as pgx scans it: from timestamptz (the older
// tables) or from bigint microseconds (the evidence tables).
type pgTime sqlstore.Time

func (t *pgTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	switch {
	case !v.Valid:
		t.T = time.Time{}
	case v.InfinityModifier != pgtype.Finite:
		return fmt.Errorf("scan time: %v timestamp", v.InfinityModifier)
	default:
		t.T = codec.Time(v.Time)
	}
	return nil
}

func (t *pgTime) ScanInt64(v pgtype.Int8) error {
	t.T = codec.FromMicros(v.Int64, v.Valid)
	return nil
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rs, err := c.query(ctx, dollar(q), args...)
	if err != nil {
		return nil, err
	}
	return connRows{rs}, nil
}

func txConn(tx pgx.Tx) conn {
	return conn{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := tx.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: tx.Query,
		tx:    tx,
	}
}

// tx is the transaction q belongs to.
func tx(q sqlstore.Q) (pgx.Tx, error) {
	if c, ok := q.(conn); ok && c.tx != nil {
		return c.tx, nil
	}
	return nil, errors.New("not inside a write transaction")
}

func (d dialect) pool() conn {
	return conn{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := d.s.pool.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: d.s.pool.Query,
	}
}

func (d dialect) Read(ctx context.Context, fn func(sqlstore.Q) error) error { return fn(d.pool()) }

func (d dialect) Tx(ctx context.Context, fn func(sqlstore.Q) error) error {
	return d.s.write(ctx, func(tx pgx.Tx) error { return fn(txConn(tx)) })
}

// Autocommit is the pool: each statement commits on its own.
func (d dialect) Autocommit() sqlstore.Q { return d.pool() }

func (dialect) Native(t time.Time) any { return tz(t) }

// tz is a timestamptz argument, NULL for the zero time.
func tz(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return codec.Time(t)
}

// Stamp keeps the zero time as year 1, not NULL.
func (dialect) Stamp(t time.Time) any { return codec.Time(t) }

// TimeCast: PostgreSQL cannot infer a CASE's type from placeholders alone.
func (dialect) TimeCast() string { return "::timestamptz" }

// AnyOf binds the values as one text[] argument.
func (dialect) AnyOf(column string, vals []string) (string, []any) {
	return column + " = ANY(?)", []any{vals}
}

// IsUnique reports whether err is a unique_violation.
func (dialect) IsUnique(err error) bool { return isUnique(err) }

// ForUpdate locks FOR NO KEY UPDATE: every caller reads rows to update
// columns other than their keys, and so does each UPDATE it then runs.
// FOR UPDATE would also conflict with the key-share locks that inserts of
// rows referencing them take (a foreign key): the incident watcher's
// control_states rows take those on devices rows in the order of the
// history it sweeps, report batches lock devices rows in id order, and
// the two deadlocked (40P01; storetest WatchBesideIngest). A row that is
// deleted is deleted by its own DELETE, which takes the stronger lock.
func (dialect) ForUpdate(of string) string {
	if of == "" {
		return " FOR NO KEY UPDATE"
	}
	return " FOR NO KEY UPDATE OF " + of
}

// Lock takes the advisory lock l until the transaction ends.
func (dialect) Lock(ctx context.Context, q sqlstore.Q, l sqlstore.Lock) error {
	_, err := q.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", int64(l))
	return err
}

// HighWater waits for the report transactions in flight (a SHARE lock
// conflicts with their inserts) and reads the highest sequence numbers:
// every row at or below them is committed, so a cursor never skips a row
// that commits late with a lower number. The lock is held for two index
// reads.
func (d dialect) HighWater(ctx context.Context) (ev, hist int64, err error) {
	err = d.s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE events, control_history IN SHARE MODE"); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT (SELECT coalesce(max(seq), 0) FROM events), (SELECT coalesce(max(id), 0) FROM control_history)").Scan(&ev, &hist)
	})
	return ev, hist, err
}

// CopyRows loads the rows with COPY.
func (dialect) CopyRows(ctx context.Context, q sqlstore.Q, table string, cols []string, rows [][]any) error {
	tx, err := tx(q)
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
	return err
}
