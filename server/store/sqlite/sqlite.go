// Package sqlite is the embedded store.Store: one SQLite file in WAL mode
// with synchronous=FULL, so an acknowledged write survives a power cut.
//
// It keeps two pools on the one file: a writer with a single connection,
// which serialises every write transaction in Go instead of in SQLite's
// busy loop (BEGIN IMMEDIATE, so a transaction never fails half-way on a
// lock upgrade), and a read pool whose connections are query_only. In WAL
// mode readers see the last commit and never wait for the writer.
//
// The queries are written once for both backends in internal/sqlstore;
// this package opens and tunes the connections, migrates the schema, and
// is SQLite's sqlstore.Dialect (dialect.go), with the report batch's bulk
// writes on statements prepared once (ingest.go).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/migrate"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is the SQLite store.Store.
type Store struct {
	// Store is every method written once over SQL (sqlstore), run on
	// this backend's dialect.
	*sqlstore.Store

	w *sql.DB // one connection: every write transaction
	r *sql.DB // query_only connections for reads

	stmts *ingestStmts // the ingest statements, prepared on w

	// ckpt is the connection the background checkpointer uses, kick wakes
	// it after a commit, and stop/ckptDone end it (see checkpointer).
	ckpt     *sql.DB
	kick     chan struct{}
	stop     chan struct{}
	ckptDone chan struct{}
	stopOnce sync.Once
}

// Write-path tuning. None of it touches durability: synchronous=FULL and
// WAL stay, so every commit is fsynced before it is acknowledged.
const (
	// writerCacheKiB is the writer's page cache. A report batch dirties
	// hundreds of index and device pages; with SQLite's 2 MiB default the
	// pager spills dirty pages to the WAL mid-transaction (pagerStress) and
	// re-reads device pages every batch.
	writerCacheKiB = 64 << 10
	// walAutoCheckpoint is the writer's own checkpoint threshold in pages.
	// It is a safety net only: the background checkpointer normally copies
	// the WAL into the database from its own connection, off the writer's
	// critical path. SQLite's default (1000 pages) would make every few
	// report batches pay a checkpoint, with its fsync of the database file,
	// inside the single writer.
	walAutoCheckpoint = 16000
	// checkpointInterval spaces the background checkpoints.
	checkpointInterval = 100 * time.Millisecond
)

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite %q: want a plain file path", path)
	}
	common := url.Values{"_pragma": {
		"busy_timeout(10000)",
		"foreign_keys(1)",
		"synchronous(FULL)",
	}}
	wq := url.Values{"_txlock": {"immediate"}, "_pragma": append([]string{
		"journal_mode(WAL)",
		fmt.Sprintf("cache_size(-%d)", writerCacheKiB),
		// Statement journals (a multi-row INSERT … ON CONFLICT inside a
		// transaction needs one) in memory instead of a temp file. They are
		// scratch space for rolling back one statement, not part of the
		// durable state.
		"temp_store(MEMORY)",
		fmt.Sprintf("wal_autocheckpoint(%d)", walAutoCheckpoint),
	}, common["_pragma"]...)}
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w}
	s.Store = sqlstore.New(dialect{s})
	// The writer's first connection switches the file to WAL; see
	// connectRetry for why that is retried here.
	if err := connectRetry(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if s.stmts, err = prepareIngest(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	rq := url.Values{"_pragma": append([]string{"query_only(1)"}, common["_pragma"]...)}
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		s.stmts.close()
		w.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := connectRetry(ctx, r); err != nil {
		r.Close()
		s.stmts.close()
		w.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	s.r = r
	c, err := sql.Open("sqlite", path+"?"+url.Values{"_pragma": common["_pragma"]}.Encode())
	if err != nil {
		r.Close()
		s.stmts.close()
		w.Close()
		return nil, fmt.Errorf("open sqlite %s for checkpoints: %w", path, err)
	}
	c.SetMaxOpenConns(1)
	c.SetMaxIdleConns(1)
	c.SetConnMaxLifetime(0)
	c.SetConnMaxIdleTime(0)
	s.ckpt, s.kick, s.stop, s.ckptDone = c, make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	if _, err := s.BackfillEventKinds(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return s, nil
}

// connectBusyLimit bounds connectRetry; it matches the busy_timeout the
// connections set for everything after their set-up.
const connectBusyLimit = 10 * time.Second

// connectRetry makes db's first connection, retrying while SQLite answers
// SQLITE_BUSY. A connection's set-up can get SQLITE_BUSY without SQLite
// ever calling the busy handler: switching a new file to WAL needs an
// exclusive lock, and while the last connection of another process (or
// another Store on the same file) closes, it holds an exclusive lock to
// checkpoint and remove the WAL ("Sometimes Queries Return SQLITE_BUSY In
// WAL Mode", sqlite.org/wal.html). busy_timeout does not cover either, so
// two servers or a server and mamorictl starting together on one file
// would otherwise fail at random (TestMigrationsIdempotent caught it in CI).
func connectRetry(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(connectBusyLimit)
	wait := time.Millisecond
	for {
		err := db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// isBusy reports whether err is SQLITE_BUSY or one of its extended codes.
func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Close stops the checkpointer and closes the pools.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.ckptDone
	return errors.Join(s.ckpt.Close(), s.r.Close(), s.stmts.close(), s.w.Close())
}

// checkpointer copies committed WAL frames into the database file from its
// own connection. A PASSIVE checkpoint takes no lock that the writer needs,
// so it runs on the other core while the writer plans and commits the next
// batch; durability does not depend on it (commits are durable once the
// WAL is fsynced). When it catches up completely, the writer restarts the
// WAL from its beginning, so the file stays bounded; if it ever falls far
// behind, the writer's wal_autocheckpoint takes over.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		// Errors (SQLITE_BUSY while another process checkpoints, a full
		// disk) are left to the next attempt and to the writer's own
		// autocheckpoint; they do not affect committed data.
		_, _ = s.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		// At most one checkpoint per interval: the hot pages (device
		// rows, index tails) are in every batch's WAL frames, and copying
		// them once per interval instead of once per batch saves most of
		// the checkpoint's CPU and I/O.
		select {
		case <-s.stop:
			return
		case <-time.After(checkpointInterval):
		}
	}
}

// kickCheckpoint wakes the checkpointer without waiting for it.
func (s *Store) kickCheckpoint() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// migrate applies the pending migrations in one transaction; the writer's
// single connection and BEGIN IMMEDIATE keep two processes from migrating
// the same file at once.
func (s *Store) migrate(ctx context.Context) error {
	all, err := migrate.Load(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		applied, err := queryInts(ctx, tx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		pending, err := migrate.Pending(all, applied)
		if err != nil {
			return err
		}
		for _, m := range pending {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		return nil
	})
}

func queryInts(ctx context.Context, tx *sql.Tx, q string) ([]int, error) {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// write runs fn in a write transaction and commits it. fn's error, or a
// failed commit, rolls everything back.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if s.kick != nil { // nil while Open migrates
		s.kickCheckpoint()
	}
	return nil
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
