package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// dialect is SQLite's sqlstore.Dialect: '?' placeholders as they are,
// times as INTEGER microseconds, and one writer connection, which runs the
// write transactions one at a time, so no row or advisory locks.
type dialect struct{ s *Store }

// conn is a sqlstore.Q on the read pool or on a write transaction.
type conn struct {
	q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
}

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := c.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

type connRows struct{ *sql.Rows }

func (r connRows) Close() { r.Rows.Close() }

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rs, err := c.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return connRows{rs}, nil
}

// tx is the write transaction q belongs to.
func tx(q sqlstore.Q) (*sql.Tx, error) {
	c, ok := q.(conn)
	if !ok {
		return nil, errors.New("not inside a write transaction")
	}
	tx, ok := c.q.(*sql.Tx)
	if !ok {
		return nil, errors.New("not inside a write transaction")
	}
	return tx, nil
}

func (d dialect) Read(ctx context.Context, fn func(sqlstore.Q) error) error { return fn(conn{d.s.r}) }

func (d dialect) Tx(ctx context.Context, fn func(sqlstore.Q) error) error {
	return d.s.write(ctx, func(tx *sql.Tx) error { return fn(conn{tx}) })
}

// Autocommit: none; SQLite writes only on its one writer, in a
// transaction.
func (dialect) Autocommit() sqlstore.Q { return nil }

func (dialect) Native(t time.Time) any { return codec.Micros(t) }

// Stamp keeps the zero time as its (negative) microseconds, not NULL.
func (dialect) Stamp(t time.Time) any { return codec.Time(t).UnixMicro() }

// TimeCast: none; a column takes whatever type it is given.
func (dialect) TimeCast() string { return "" }

// AnyOf: SQLite has no arrays; one placeholder a value.
func (dialect) AnyOf(column string, vals []string) (string, []any) {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	return column + " IN (" + placeholders(len(vals), "?") + ")", args
}

func (dialect) IsUnique(err error) bool { return isUnique(err) }

// ForUpdate: the one writer runs write transactions one at a time; there
// is no row lock to take.
func (dialect) ForUpdate(string) string { return "" }

// Lock: the one writer already serialises every writer.
func (dialect) Lock(context.Context, sqlstore.Q, sqlstore.Lock) error { return nil }

// HighWater: with one writer, every row visible is committed in order.
func (dialect) HighWater(context.Context) (int64, int64, error) { return 1<<63 - 1, 1<<63 - 1, nil }

// CopyRows inserts the rows with one prepared INSERT.
func (dialect) CopyRows(ctx context.Context, q sqlstore.Q, table string, cols []string, rows [][]any) error {
	tx, err := tx(q)
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES ("+placeholders(len(cols), "?")+")")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range rows {
		if _, err := stmt.ExecContext(ctx, r...); err != nil {
			return err
		}
	}
	return nil
}
