package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// dialect is the sqlstore.Dialect of this backend.
type dialect struct{ s *Store }

type conn struct {
	q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
}

func (e conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := e.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

type connRows struct{ *sql.Rows }

func (r connRows) Close() { r.Rows.Close() }

func (e conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rs, err := e.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return connRows{rs}, nil
}

func (d dialect) Read(ctx context.Context, fn func(sqlstore.Q) error) error { return fn(conn{d.s.r}) }
func (d dialect) Write(ctx context.Context, fn func(sqlstore.Q) error) error {
	return d.s.write(ctx, func(tx *sql.Tx) error { return fn(conn{tx}) })
}
func (dialect) Native(t time.Time) any { return codec.Micros(t) }

// Auto: SQLite writes only on its one writer, in a transaction.
func (d dialect) Auto(ctx context.Context, fn func(sqlstore.Q) error) error { return d.Write(ctx, fn) }

// Stamp keeps the zero time as its (negative) microseconds, not NULL.
func (dialect) Stamp(t time.Time) any { return codec.Time(t).UnixMicro() }

func (dialect) IsUnique(err error) bool { return isUnique(err) }

// ForUpdate: the one writer runs write transactions one at a time; there
// is no row lock to take.
func (dialect) ForUpdate(string) string { return "" }

func (dialect) AppendAudit(ctx context.Context, q sqlstore.Q, r store.AuditRecord) error {
	tx, ok := q.(conn).q.(*sql.Tx)
	if !ok {
		return errors.New("append audit: not inside a write transaction")
	}
	_, err := appendAuditTx(ctx, tx, r)
	return err
}

// WatchLock: SQLite has one writer; nothing to take.
func (dialect) WatchLock(context.Context, sqlstore.Q) error { return nil }

// HighWater: with one writer, every row visible is committed in order.
func (dialect) HighWater(context.Context) (int64, int64, error) { return 1<<63 - 1, 1<<63 - 1, nil }
