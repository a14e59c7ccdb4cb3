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
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// lockWatch serialises watcher steps of all servers on one database.
const lockWatch int64 = 0x6d616d6f_72690008

// dialect is the sqlstore.Dialect of this backend.
type dialect struct{ s *Store }

type conn struct {
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

func (e conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return e.exec(ctx, dollar(q), args...)
}

type connRows struct{ pgx.Rows }

func (r connRows) Close() { r.Rows.Close() }

func (e conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rs, err := e.query(ctx, dollar(q), args...)
	if err != nil {
		return nil, err
	}
	return connRows{rs}, nil
}

func txQ(tx pgx.Tx) conn {
	return conn{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := tx.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: tx.Query,
		tx:    tx,
	}
}

func (d dialect) Read(ctx context.Context, fn func(sqlstore.Q) error) error {
	return fn(conn{
		exec: func(ctx context.Context, sql string, args ...any) (int64, error) {
			t, err := d.s.pool.Exec(ctx, sql, args...)
			return t.RowsAffected(), err
		},
		query: d.s.pool.Query,
	})
}

func (d dialect) Write(ctx context.Context, fn func(sqlstore.Q) error) error {
	return d.s.write(ctx, func(tx pgx.Tx) error { return fn(txQ(tx)) })
}

func (dialect) Native(t time.Time) any { return tz(t) }

// Auto runs fn on the pool (Read's Q writes too): each statement commits
// on its own.
func (d dialect) Auto(ctx context.Context, fn func(sqlstore.Q) error) error { return d.Read(ctx, fn) }

// Stamp keeps the zero time as year 1, not NULL.
func (dialect) Stamp(t time.Time) any { return codec.Time(t) }

func (dialect) IsUnique(err error) bool { return isUnique(err) }

func (dialect) ForUpdate(of string) string {
	if of == "" {
		return " FOR UPDATE"
	}
	return " FOR UPDATE OF " + of
}

func (dialect) AppendAudit(ctx context.Context, q sqlstore.Q, r store.AuditRecord) error {
	tx := q.(conn).tx
	if tx == nil {
		return errors.New("append audit: not inside a write transaction")
	}
	_, err := appendAuditTx(ctx, tx, r)
	return err
}

func (dialect) WatchLock(ctx context.Context, q sqlstore.Q) error {
	_, err := q.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", lockWatch)
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
