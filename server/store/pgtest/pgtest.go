// Package pgtest runs a real, throwaway PostgreSQL for tests: the Debian
// server binaries, a temporary data directory, a unix socket only (no TCP
// listener at all), fsync on. One server is started per test binary, on
// first use; every test gets a fresh database in it.
//
// Use it from a test package like this:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	dsn := pgtest.DSN(t) // a new, empty database
//
// When the binaries are missing, DSN calls testenv.Unavailable: the test is
// skipped on a developer's machine and fails under CI=true.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// server is the one PostgreSQL of this test binary. It is package state on
// purpose: it must outlive single tests and is torn down by Main.
var server struct {
	once    sync.Once
	err     error // why it could not start
	missing bool  // the binaries are not installed
	dir     string
	sock    string
	user    string
	cmd     *exec.Cmd
	exited  chan struct{}
	dbs     atomic.Int64
	// how the server was started, for Shutdown and Start
	bin, data string
	run       func(*exec.Cmd)
}

// Main runs the tests and stops the server afterwards, if one started.
// Call it from TestMain and pass its result to os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	stop()
	return code
}

// binDir finds the newest /usr/lib/postgresql/<version>/bin with a server.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		if p, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

func version(p string) int {
	var v int
	fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(p))), "%d", &v)
	return v
}

func start() {
	bin, err := binDir()
	if err != nil {
		server.err, server.missing = err, true
		return
	}
	// Not t.TempDir: that is 0700 root-owned, and the server runs as the
	// postgres user when we are root. This directory is made reachable for
	// it and removed by stop.
	dir, err := os.MkdirTemp("", "mamori-pgtest-")
	if err != nil {
		server.err = fmt.Errorf("pgtest: %w", err)
		return
	}
	server.dir = dir
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			server.err = fmt.Errorf("pgtest: %w", err)
			return
		}
	}
	run, err := runAs(dir, data, sock) // drops root to postgres where needed
	if err != nil {
		server.err, server.missing = err, errors.Is(err, errors.ErrUnsupported)
		return
	}
	server.sock, server.user = sock, "mamori_test"
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", server.user,
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions")
	run(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		server.err = fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
		return
	}
	server.bin, server.data, server.run = bin, data, run
	server.err = launch()
}

// launch starts postgres on the initialised data directory and waits until
// it accepts connections.
func launch() error {
	dir, data, sock, bin, run := server.dir, server.data, server.sock, server.bin, server.run
	logf, err := os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-k", sock, // the socket goes here…
		"-c", "listen_addresses=", // …and nowhere else: no TCP at all
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
		"-c", "max_connections=200", "-c", "shared_buffers=128MB",
	)
	run(cmd)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	server.cmd, server.exited = cmd, make(chan struct{})
	exited := server.exited
	go func() { cmd.Wait(); close(exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, dsn("postgres"))
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return fmt.Errorf("pgtest: postgres exited during start-up:\n%s", log)
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Shutdown stops the test binary's PostgreSQL (fast shutdown: sessions are
// cut, as in a database restart or fail-over) and keeps its data; Start
// brings it back. For fault tests; the server must have been started by a
// DSN call first.
func Shutdown(t testing.TB) {
	t.Helper()
	if server.cmd == nil {
		t.Fatal("pgtest: Shutdown before the server started (call DSN first)")
	}
	server.cmd.Process.Signal(os.Interrupt)
	select {
	case <-server.exited:
	case <-time.After(30 * time.Second):
		server.cmd.Process.Kill()
		<-server.exited
	}
	server.cmd = nil
}

// Kill SIGKILLs the test binary's PostgreSQL postmaster, as a crash of the
// database's process would: no shutdown checkpoint, sessions cut; the
// orphaned backends notice the postmaster's death and exit by themselves.
// Start brings it back through crash recovery.
func Kill(t testing.TB) {
	t.Helper()
	if server.cmd == nil {
		t.Fatal("pgtest: Kill before the server started (call DSN first)")
	}
	server.cmd.Process.Kill()
	<-server.exited
	server.cmd = nil
}

// Start starts PostgreSQL again after Shutdown or Kill, on the same data
// directory and socket, and waits until it accepts connections. After a
// Kill the new postmaster refuses to start while an orphaned backend still
// holds the old shared memory; Start tries again for up to a minute.
func Start(t testing.TB) {
	t.Helper()
	if server.cmd != nil {
		return
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := launch()
		if err == nil {
			return
		}
		server.cmd = nil
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop shuts the server down (fast shutdown) and removes its directory.
func stop() {
	if server.cmd != nil && server.cmd.Process != nil {
		server.cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
		select {
		case <-server.exited:
		case <-time.After(30 * time.Second):
			server.cmd.Process.Kill()
			<-server.exited
		}
	}
	if server.dir != "" {
		os.RemoveAll(server.dir)
	}
}

func dsn(db string) string {
	q := url.Values{"host": {server.sock}, "user": {server.user}, "sslmode": {"disable"}}
	return "postgres:///" + url.PathEscape(db) + "?" + q.Encode()
}

// DSN returns the URL of a new, empty database on the test server,
// dropped when t ends. The server starts on first use.
func DSN(t testing.TB) string {
	t.Helper()
	name := create(t)
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, dsn("postgres"))
		if err != nil {
			t.Errorf("pgtest: connect: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return dsn(name)
}

// SharedDSN is DSN for a fixture that outlives t (say, a large data set
// that several benchmarks share): the database is kept until the server
// stops.
func SharedDSN(t testing.TB) string {
	t.Helper()
	return dsn(create(t))
}

func create(t testing.TB) string {
	t.Helper()
	server.once.Do(start)
	if server.missing {
		testenv.Unavailable(t, server.err.Error())
	}
	if server.err != nil {
		t.Fatal(server.err)
	}
	name := fmt.Sprintf("t%d_%s", server.dbs.Add(1), sanitize(t.Name()))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return name
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
	return s[:min(len(s), 40)]
}
