package web_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
	"github.com/mamori-dev/mamori/server/store/postgres"
	"github.com/mamori-dev/mamori/server/store/sqlite"
	"github.com/mamori-dev/mamori/server/web"
)

// The console at fleet scale: 100,000 devices and 10 million events in
// SQLite, built with bulk SQL (recursive CTEs) once into a cached file
// under the temp directory ($TMPDIR/mamori-bench/, about 1.5 GB; delete it
// to rebuild). The file's name carries a hash of the SQLite migrations and
// of the statements that fill it, so a schema change, a change to the data
// set, or a cache built on another branch means a new file; older ones of
// the same size are removed when it is built, and a cached file whose
// schema is not the newest is rebuilt rather than migrated in place. The
// handlers are timed in process (httptest), without TLS: server time
// only. BenchmarkConsoleHealthz is the in-run baseline.
//
//	go test -run '^$' -bench Console -benchtime 20x -timeout 60m ./server/web/

// MAMORI_BENCH_SMALL=1 shrinks the fleet a hundredfold, to check the
// benchmark itself quickly.
var (
	benchSmall = os.Getenv("MAMORI_BENCH_SMALL") == "1"
	benchFleet = benchSize{devices: pick(100_000, 1_000), events: pick(10_000_000, 100_000)}
	// benchReference is the same data set at 1,000 devices: the device
	// list is measured on both in one run, so the ratio says how the page
	// scales whatever the machine's load.
	benchReference = benchSize{devices: 1_000, events: 100_000}
	// For the PostgreSQL builder (one size).
	benchDevices = benchFleet.devices
	benchEvents  = benchFleet.events
)

// benchSize is the size of a data set.
type benchSize struct{ devices, events int }

// benchFile names the cached data set of size sz.
func benchFile(sz benchSize) string {
	return fmt.Sprintf("console-%d-%d-%s.db", sz.devices, sz.events, schemaHash(benchStatements(sz)))
}

// sqliteMigrations are the SQLite migration files, in order.
func sqliteMigrations() []string {
	files, _ := filepath.Glob("../store/sqlite/migrations/*.sql")
	sort.Strings(files)
	return files
}

// schemaHash is a short hash of the SQLite migrations (names and SQL) and
// of the statements that fill the data set.
func schemaHash(stmts []string) string {
	h := sha256.New()
	for _, f := range sqliteMigrations() {
		b, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	for _, q := range stmts {
		fmt.Fprintf(h, "stmt %d\n%s", len(q), q)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func pick(full, small int) int {
	if benchSmall {
		return small
	}
	return full
}

var benchT0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// benchStatements fill a migrated store of size sz.
func benchStatements(sz benchSize) []string {
	t0 := benchT0.UnixMicro()
	recent := benchT0.Add(-time.Minute).UnixMicro()
	old := benchT0.Add(-48 * time.Hour).UnixMicro()
	return []string{
		// 100,000 devices: 1 % never reported, 1 % offline, 7 % non-compliant,
		// in 20 groups. Facts are the protobuf encoding of hostname (field 1)
		// and serial_number (field 11).
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
		INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial, last_seen, verdict, reasons, failing_since, policy_version, device_group, os, agent_version)
		SELECT printf('dev-%%06d', i), printf('m-%%06d', i), printf('pc-%%06d', i),
			CAST(char(10, 9) || printf('pc-%%06d', i) || char(90, 9) || printf('SN-%%06d', i) AS BLOB),
			%d, printf('%%x', i),
			CASE WHEN i %% 100 = 0 THEN NULL WHEN i %% 100 = 1 THEN %d ELSE %d END,
			CASE WHEN i %% 100 = 0 THEN 'NEVER_REPORTED' WHEN i %% 100 < 8 THEN 'NONCOMPLIANT' ELSE 'COMPLIANT' END,
			CASE WHEN i %% 100 BETWEEN 1 AND 7 THEN '["agent: FAILED"]' ELSE '[]' END,
			CASE WHEN i %% 100 BETWEEN 1 AND 7 THEN %d + i ELSE NULL END,
			1, printf('課-%%02d', i %% 20),
			CASE WHEN i %% 10 = 0 THEN 'windows' ELSE 'linux' END, printf('1.%%d.0', i %% 3)
		FROM n`, sz.devices, t0-int64(time.Hour/time.Microsecond), old, recent, t0-int64(24*time.Hour/time.Microsecond)),
		// 10,000,000 events, 100 per device, in (device, seq) order so every
		// index is appended to. Each is media/set_read_only.
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
		INSERT INTO events (seq, device_id, event_id, received_at, event, kind)
		SELECT i, printf('dev-%%06d', (i - 1) / %d + 1), printf('%%08d', i), %d + i,
			X'1a056d65646961220d7365745f726561645f6f6e6c79', 'set_read_only'
		FROM n`, sz.events, sz.events/sz.devices, t0-int64(30*24*time.Hour/time.Microsecond)),
		// Three controls per device, their history and current states.
		`INSERT INTO control_history (device_id, control, from_state, to_state, detail, at)
		SELECT id, c.name, 0, CASE WHEN c.name = 'agent' AND verdict = 'NONCOMPLIANT' THEN 4 WHEN c.name = 'media' THEN 2 ELSE 1 END, '', enrolled_at
		FROM devices, (SELECT 'agent' AS name UNION ALL SELECT 'media' UNION ALL SELECT 'login-mfa') c
		WHERE verdict <> 'NEVER_REPORTED' ORDER BY id, c.name`,
		`INSERT INTO control_states (device_id, control, state, history_id) SELECT device_id, control, to_state, id FROM control_history`,
		// Search terms: a user, a USB serial and the serial per device.
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'user', printf('user-%06d', substr(id, 5) + 0), id, enrolled_at FROM devices`,
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'usb', printf('USB%08X', (substr(id, 5) + 0) * 7919), id, enrolled_at FROM devices`,
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'serial', printf('SN-%06d', substr(id, 5) + 0), id, enrolled_at FROM devices`,
		// 90 days of snapshots.
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 89)
		INSERT INTO compliance_daily (day, total, compliant, noncompliant, offline, never_reported, revoked, taken_at)
		SELECT date('2026-11-25', '-' || i || ' days'), %d, %d * 90 / 100 + i, %d * 7 / 100 - i, %d / 50, %d / 100, 0, %d FROM n`,
			sz.devices, sz.devices, sz.devices, sz.devices, sz.devices, t0),
		`ANALYZE`,
	}
}

// buildBenchDB fills a fresh store file with a fleet of size sz.
func buildBenchDB(ctx context.Context, path string, sz benchSize) error {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	if _, err := st.SetPolicy(ctx, store.PolicyChange{Policy: policy.Default(), Actor: "bench", At: benchT0}, 0); err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", path+"?_pragma=synchronous(OFF)&_pragma=cache_size(-500000)&_pragma=foreign_keys(0)&_pragma=temp_store(MEMORY)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for i, q := range benchStatements(sz) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bench data step %d: %w", i, err)
		}
	}
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// benchSchemaCurrent reports whether the file at path has every SQLite
// migration applied and no other: a file of an older schema would be
// migrated in place by sqlite.Open (backfills over 10 million events),
// and one of a newer schema belongs to another branch.
func benchSchemaCurrent(ctx context.Context, path string) bool {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return false
	}
	defer db.Close()
	var n, top int
	if err := db.QueryRowContext(ctx, "SELECT count(*), coalesce(max(version), 0) FROM schema_migrations").Scan(&n, &top); err != nil {
		return false
	}
	want := len(sqliteMigrations())
	return want > 0 && n == want && top == want
}

var benchDBs struct {
	sync.Mutex
	m map[benchSize]string
}

// benchDB returns the cached data set of size sz, building it when there
// is none of the current schema.
func benchDB(b *testing.B, sz benchSize) string {
	benchDBs.Lock()
	defer benchDBs.Unlock()
	if p, ok := benchDBs.m[sz]; ok {
		return p
	}
	p, err := cachedBenchDB(context.Background(), sz)
	if err != nil {
		b.Fatal(err)
	}
	if benchDBs.m == nil {
		benchDBs.m = map[benchSize]string{}
	}
	benchDBs.m[sz] = p
	return p
}

func cachedBenchDB(ctx context.Context, sz benchSize) (string, error) {
	dir := filepath.Join(os.TempDir(), "mamori-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := benchFile(sz)
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		if benchSchemaCurrent(ctx, path) {
			return path, nil
		}
		fmt.Fprintf(os.Stderr, "%s: not of the current schema, rebuilding\n", path)
	}
	// Data sets of an older schema go (1.5 GB each).
	old, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("console-%d-%d-*.db*", sz.devices, sz.events)))
	for _, f := range old {
		os.Remove(f)
	}
	tmp := filepath.Join(dir, "building-"+name)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	start := time.Now()
	if err := buildBenchDB(ctx, tmp, sz); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "built %s in %s\n", path, time.Since(start).Round(time.Second))
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	if !benchSchemaCurrent(ctx, tmp) {
		return "", fmt.Errorf("%s: built, but its schema is not the current one", tmp)
	}
	return path, os.Rename(tmp, path)
}

type benchConsole struct {
	h      http.Handler
	cookie *http.Cookie
}

func openBenchConsole(b *testing.B) *benchConsole { return openBenchConsoleSize(b, benchFleet) }

func openBenchConsoleSize(b *testing.B, sz benchSize) *benchConsole {
	path := benchDB(b, sz)
	// A copy per run would cost 1.5 GB; the console only reads, and the
	// session rows it writes are removed again.
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return benchConsoleOn(b, st)
}

func benchConsoleOn(b *testing.B, st store.Store) *benchConsole {
	ctx := context.Background()
	opID := "bench-officer"
	if _, err := st.GetOperator(ctx, opID); errors.Is(err, store.ErrNotFound) {
		if err := st.CreateOperator(ctx, store.Operator{ID: opID, Name: "bench", Role: "officer", TokenHash: auth.HashToken("bench"), CreatedAt: benchT0}); err != nil {
			b.Fatal(err)
		}
	}
	sid := auth.NewSessionID()
	hash, _ := auth.HashSessionID(sid)
	now := func() time.Time { return benchT0 }
	if err := st.CreateSession(ctx, store.ConsoleSession{IDHash: hash, OperatorID: opID, CreatedAt: benchT0, LastSeen: benchT0}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.DeleteSession(ctx, hash) })
	adm, err := admin.New(admin.Deps{Store: st, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	seeds, err := auth.NewSeedKey(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	c, err := web.New(web.Deps{Store: st, Config: web.DefaultConfig(), Now: now, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)), Admin: adm, OperatorSeeds: seeds})
	if err != nil {
		b.Fatal(err)
	}
	return &benchConsole{h: c.Handler(), cookie: &http.Cookie{Name: "__Host-mamori_session", Value: sid.Reveal()}}
}

func (bc *benchConsole) get(b *testing.B, path, want string) {
	req := httptest.NewRequest(http.MethodGet, "https://console.test"+path, nil)
	req.AddCookie(bc.cookie)
	rec := httptest.NewRecorder()
	bc.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
		b.Fatalf("GET %s: %d, %q not in the page:\n%.2000s", path, rec.Code, want, rec.Body.String())
	}
}

func benchPage(b *testing.B, path, want string) {
	benchPageOn(b, openBenchConsole(b), path, want)
}

// benchPageOn times path and reports (and returns) its mean in ms/page.
func benchPageOn(b *testing.B, bc *benchConsole, path, want string) float64 {
	bc.get(b, path, want) // warm the page cache once
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		bc.get(b, path, want)
	}
	ms := float64(time.Since(start).Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/page")
	return ms
}

// BenchmarkConsoleHealthz is the baseline: a trivial page through the
// same handler chain (security headers, cross-origin check).
func BenchmarkConsoleHealthz(b *testing.B) { benchPage(b, "/healthz", "ok") }

// BenchmarkConsoleFleet: counts, by control, by group, the 90-day chart and
// the first 200 non-compliant devices at 100,000 devices.
func BenchmarkConsoleFleet(b *testing.B) {
	benchPage(b, "/fleet", `id="by-control"`)
}

// BenchmarkConsoleSearchHostname: hostname prefix search (index range).
func BenchmarkConsoleSearchHostname(b *testing.B) {
	benchPage(b, "/search?q=pc-00099", "pc-000999")
}

// BenchmarkConsoleSearchUser: user search (search_terms range).
func BenchmarkConsoleSearchUser(b *testing.B) {
	benchPage(b, "/search?kind=user&q=user-00099", "pc-000999")
}

// BenchmarkConsoleSearchUSB: USB serial search.
func BenchmarkConsoleSearchUSB(b *testing.B) {
	benchPage(b, "/search?kind=usb&q=USB0", "/devices/dev-")
}

// BenchmarkConsoleDevice: one device page (its last 50 of 100 events).
func BenchmarkConsoleDevice(b *testing.B) {
	benchPage(b, "/devices/dev-000999", "pc-000999")
}

// BenchmarkConsoleDeviceList: the device list (端末一覧) at 100,000
// devices — the first page, filtered pages (state, 所属, both, failing
// control, OS and agent), sorted pages, deep pages and the last page;
// each answer counts the matches too. Issue #19 asks for less than 200 ms
// of server time. Two baselines are measured in the same run: the
// signed-in empty page (session check and touch, template: what every
// page costs) and the same URL over 1,000 devices; each case reports
// ms/page and its ratio to both (x-empty, x-1k).
func BenchmarkConsoleDeviceList(b *testing.B) {
	bc := openBenchConsole(b)
	ref := openBenchConsoleSize(b, benchReference)
	empty := bc.mean(b, "/search", `id="q"`, 50)
	b.Logf("baseline: signed-in empty page %.3f ms", empty)
	// A deep page is what the pager's links ask for: the page after a
	// device (keyset), here one at about frac % of the list — the same
	// place in both data sets.
	type listCase struct{ name, path, ref, want string }
	c := func(name, path string, want string) listCase { return listCase{name, path, path, want} }
	after := func(name, path string, frac, plus int, want string) listCase {
		at := func(n int) string {
			return fmt.Sprintf("%s&page=%d&after=dev-%06d", path, n*frac/100/50+1, n*frac/100+plus)
		}
		return listCase{name, at(benchFleet.devices), at(benchReference.devices), want}
	}
	const list = `id="devices"`
	for _, x := range []listCase{
		c("first page", "/devices", "pc-000001"),
		c("state noncompliant by since", "/devices?state=noncompliant&sort=failing_since", list),
		c("state offline by last report", "/devices?state=offline&sort=last_seen", list),
		c("group", "/devices?group=%E8%AA%B2-03&sort=group", list),
		c("group and state", "/devices?group=%E8%AA%B2-03&state=noncompliant", list),
		c("sorted by group desc", "/devices?sort=group&desc=1", list),
		after("deep page by last report", "/devices?sort=last_seen&desc=1", 75, 0, list),
		after("last page by host name desc", "/devices?desc=1", 0, 51, "pc-000001"),
		after("deep compliant by since desc", "/devices?state=compliant&sort=failing_since&desc=1", 75, 50, list),
		after("failing control", "/devices?control=agent", 50, 1, list),
		after("os and agent", "/devices?os=windows&agent=1.1.0", 50, 20, list),
		after("group state os desc", "/devices?group=%E8%AA%B2-07&state=compliant&os=linux&desc=1", 50, 27, list),
		// An old link: a page number without a device, read by offset.
		c("old link: page 1500 by offset", fmt.Sprintf("/devices?sort=last_seen&desc=1&page=%d", pick(1500, 15)), list),
	} {
		if x.name == "old link: page 1500 by offset" {
			x.ref = "/devices?sort=last_seen&desc=1&page=15"
		}
		b.Run(x.name, func(b *testing.B) {
			small := ref.mean(b, x.ref, x.want, 20)
			ms := benchPageOn(b, bc, x.path, x.want)
			b.ReportMetric(small, "ms/page-1k")
			b.ReportMetric(ms/small, "x-1k")
			b.ReportMetric(ms/empty, "x-empty")
		})
	}
}

// mean is the mean server time of n loads of path, in milliseconds,
// outside the benchmark's timer (after one warming load).
func (bc *benchConsole) mean(b *testing.B, path, want string, n int) float64 {
	b.StopTimer()
	defer b.StartTimer()
	bc.get(b, path, want)
	start := time.Now()
	for range n {
		bc.get(b, path, want)
	}
	return float64(time.Since(start).Microseconds()) / 1000 / float64(n)
}

// BenchmarkConsoleSignedInEmpty is the second baseline: a signed-in page
// that reads nothing (session check and touch, template).
func BenchmarkConsoleSignedInEmpty(b *testing.B) { benchPage(b, "/search", `id="q"`) }

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// buildBenchPG fills a PostgreSQL database with the same fleet, with
// generate_series. pgtest's server is throwaway, so it is built per run.
func buildBenchPG(ctx context.Context, st *postgres.Store, dsn string) error {
	if _, err := st.SetPolicy(ctx, store.PolicyChange{Policy: policy.Default(), Actor: "bench", At: benchT0}, 0); err != nil {
		return err
	}
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	t0 := benchT0.Format(time.RFC3339)
	stmts := []string{
		"SET synchronous_commit = off",
		fmt.Sprintf(`INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial, last_seen, verdict, reasons, failing_since, policy_version, device_group, os, agent_version)
		SELECT 'dev-' || lpad(i::text, 6, '0'), 'm-' || lpad(i::text, 6, '0'), 'pc-' || lpad(i::text, 6, '0'),
			'\x0a09'::bytea || convert_to('pc-' || lpad(i::text, 6, '0'), 'UTF8') || '\x5a09'::bytea || convert_to('SN-' || lpad(i::text, 6, '0'), 'UTF8'),
			'%[1]s'::timestamptz - interval '1 hour', to_hex(i),
			CASE WHEN i %% 100 = 0 THEN NULL WHEN i %% 100 = 1 THEN '%[1]s'::timestamptz - interval '48 hours' ELSE '%[1]s'::timestamptz - interval '1 minute' END,
			CASE WHEN i %% 100 = 0 THEN 'NEVER_REPORTED' WHEN i %% 100 < 8 THEN 'NONCOMPLIANT' ELSE 'COMPLIANT' END,
			CASE WHEN i %% 100 BETWEEN 1 AND 7 THEN '["agent: FAILED"]' ELSE '[]' END,
			CASE WHEN i %% 100 BETWEEN 1 AND 7 THEN '%[1]s'::timestamptz - interval '24 hours' + i * interval '1 microsecond' END,
			1, '課-' || lpad((i %% 20)::text, 2, '0'),
			CASE WHEN i %% 10 = 0 THEN 'windows' ELSE 'linux' END, '1.' || (i %% 3) || '.0'
		FROM generate_series(1, %[2]d) i`, t0, benchDevices),
		fmt.Sprintf(`INSERT INTO events (device_id, event_id, received_at, event)
		SELECT 'dev-' || lpad(((i - 1) / %[3]d + 1)::text, 6, '0'), lpad(i::text, 8, '0'), '%[1]s'::timestamptz - interval '30 days' + i * interval '1 microsecond',
			'\x1a056d65646961220d7365745f726561645f6f6e6c79'::bytea
		FROM generate_series(1, %[2]d) i`, t0, benchEvents, benchEvents/benchDevices),
		`INSERT INTO control_history (device_id, control, from_state, to_state, detail, at)
		SELECT id, c.name, 0, CASE WHEN c.name = 'agent' AND verdict = 'NONCOMPLIANT' THEN 4 WHEN c.name = 'media' THEN 2 ELSE 1 END, '', enrolled_at
		FROM devices, (VALUES ('agent'), ('media'), ('login-mfa')) c(name)
		WHERE verdict <> 'NEVER_REPORTED' ORDER BY id, c.name`,
		`INSERT INTO control_states (device_id, control, state, history_id) SELECT device_id, control, to_state, id FROM control_history`,
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'user', 'user-' || substr(id, 5), id, 0 FROM devices`,
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'usb', 'USB' || upper(lpad(to_hex(substr(id, 5)::int * 7919), 8, '0')), id, 0 FROM devices`,
		`INSERT INTO search_terms (kind, term, device_id, last_at) SELECT 'serial', 'SN-' || substr(id, 5), id, 0 FROM devices`,
		fmt.Sprintf(`INSERT INTO compliance_daily (day, total, compliant, noncompliant, offline, never_reported, revoked, taken_at)
		SELECT to_char(date '2026-11-25' - i, 'YYYY-MM-DD'), %[1]d, %[1]d * 90 / 100 + i, %[1]d * 7 / 100 - i, %[1]d / 50, %[1]d / 100, 0, 0
		FROM generate_series(0, 89) i`, benchDevices),
		// As a server that has run for a while: visibility map set,
		// statistics current, no autovacuum of 10M fresh rows competing
		// with the measurement.
		"VACUUM ANALYZE",
	}
	for i, q := range stmts {
		if _, err := db.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench data step %d: %w", i, err)
		}
	}
	return nil
}

// BenchmarkConsolePostgres: the same pages on PostgreSQL (pgtest's
// throwaway server; the data set is built in each run, ~1-2 minutes).
func BenchmarkConsolePostgres(b *testing.B) {
	dsn := pgtest.DSN(b)
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	start := time.Now()
	if err := buildBenchPG(ctx, st, dsn); err != nil {
		b.Fatal(err)
	}
	b.Logf("built the PostgreSQL data set in %s", time.Since(start).Round(time.Second))
	bc := benchConsoleOn(b, st)
	for _, pg := range []struct{ name, path, want string }{
		{"Healthz", "/healthz", "ok"},
		{"SignedInEmpty", "/search", `id="q"`},
		{"Fleet", "/fleet", `id="by-control"`},
		{"SearchHostname", "/search?q=pc-00099", "pc-000999"},
		{"SearchUser", "/search?kind=user&q=user-00099", "pc-000999"},
		{"SearchUSB", "/search?kind=usb&q=USB0", "/devices/dev-"},
		{"Device", "/devices/dev-000999", "pc-000999"},
		// The device list: the same query shapes as BenchmarkConsoleDeviceList.
		{"DeviceList_first page", "/devices", "pc-000001"},
		{"DeviceList_state noncompliant by since", "/devices?state=noncompliant&sort=failing_since", `id="devices"`},
		{"DeviceList_group and state", "/devices?group=%E8%AA%B2-03&state=noncompliant", `id="devices"`},
		{"DeviceList_sorted by group desc", "/devices?sort=group&desc=1", `id="devices"`},
		{"DeviceList_deep page by last report", "/devices?sort=last_seen&desc=1&page=1500&after=" + benchID(75, 0), `id="devices"`},
		{"DeviceList_last page by host name desc", "/devices?desc=1&page=2000&after=" + benchID(0, 51), "pc-000001"},
		{"DeviceList_deep compliant by since desc", "/devices?state=compliant&sort=failing_since&desc=1&page=1500&after=" + benchID(75, 50), `id="devices"`},
		{"DeviceList_failing control", "/devices?control=agent&page=100&after=" + benchID(50, 1), `id="devices"`},
		{"DeviceList_os and agent", "/devices?os=windows&agent=1.1.0&page=50&after=" + benchID(50, 20), `id="devices"`},
		{"DeviceList_old link page 1500 by offset", fmt.Sprintf("/devices?sort=last_seen&desc=1&page=%d", pick(1500, 15)), `id="devices"`},
	} {
		b.Run(pg.name, func(b *testing.B) { benchPageOn(b, bc, pg.path, pg.want) })
	}
}

// benchID is the ID of the device at about frac % of the fleet, plus.
func benchID(frac, plus int) string { return fmt.Sprintf("dev-%06d", benchDevices*frac/100+plus) }

// BenchmarkConsoleEvidenceExport: the whole evidence export (every device
// and control, streamed), HTML and CSV, with the peak heap seen during it.
func BenchmarkConsoleEvidenceExport(b *testing.B) {
	bc := openBenchConsole(b)
	for _, kind := range []string{"report", "export.csv"} {
		b.Run(kind, func(b *testing.B) {
			path := "/evidence/" + kind + "?from=2026-10-26&to=2026-11-25"
			var peak uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			var size int
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "https://console.test"+path, nil)
				req.AddCookie(bc.cookie)
				w := &countingWriter{h: http.Header{}, code: http.StatusOK}
				bc.h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("%s: %d", path, w.code)
				}
				size = w.n
			}
			close(stop)
			<-done
			b.ReportMetric(float64(size)/1e6, "MB/export")
			b.ReportMetric(float64(peak)/1e6, "MB-peak-heap")
		})
	}
}

// countingWriter is a ResponseWriter that keeps nothing, like a client
// reading the stream: the heap then shows the server's own memory.
type countingWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *countingWriter) Header() http.Header         { return w.h }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
