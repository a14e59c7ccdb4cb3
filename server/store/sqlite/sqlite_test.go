package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/migrate"
	"github.com/mamori-dev/mamori/server/store/storetest"
)

func openTest(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "mamori.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func TestOpenSetsDurabilityPragmas(t *testing.T) {
	s := openTest(t)
	tests := []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "synchronous", "2"}, // FULL
		{s.w, "foreign_keys", "1"},
		{s.w, "busy_timeout", "10000"},
		{s.r, "synchronous", "2"},
		{s.r, "query_only", "1"},
		{s.r, "journal_mode", "wal"},
	}
	for _, tc := range tests {
		var got string
		if err := tc.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	if _, err := s.r.ExecContext(t.Context(), "DELETE FROM devices"); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestOpenRejectsDSN(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=memory", "file:x.db"} {
		if s, err := Open(t.Context(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func appliedVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	all, err := migrate.Load(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range all {
		want = append(want, m.Version)
	}
	for i := range 3 {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if d := cmp.Diff(want, appliedVersions(t, s)); d != "" {
			t.Errorf("open %d: schema_migrations (-want +got):\n%s", i, d)
		}
		s.Close()
	}
	// Concurrent opens of one file all succeed and migrate once.
	var wg sync.WaitGroup
	dir := t.TempDir()
	for range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), filepath.Join(dir, "c.db"))
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(t.Context(), path); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a newer schema: err = %v, want a 'newer' error", err)
	}
}

func TestMigrationLoadRules(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		ok    bool
	}{
		{"in order", []string{"0001_a.sql", "0002_b.sql"}, true},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, false},
		{"duplicate", []string{"0001_a.sql", "01_b.sql"}, false},
		{"bad name", []string{"init.sql"}, false},
		{"zero", []string{"0000_a.sql"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tc.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			_, err := migrate.Load(fsys, "m")
			if (err == nil) != tc.ok {
				t.Errorf("Load = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestCorruptRows: a damaged row gives an error naming the device, never a
// panic, and other devices keep working.
func TestCorruptRows(t *testing.T) {
	tests := []struct {
		name, column string
		value        any
		want         string
	}{
		{"controls blob", "controls", []byte{0x0a, 0xff, 0x01}, "control snapshot"},
		{"controls wrong field", "controls", []byte{0x12, 0x00}, "control snapshot"},
		{"facts blob", "facts", []byte{0xff, 0xff, 0xff}, "device facts"},
		{"reasons", "reasons", "[not json", "reasons"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			ctx := t.Context()
			if err := s.CreateToken(ctx, store.Token{ID: "t", Hash: []byte("t"), ExpiresAt: storetest.FleetNow, Uses: 2}); err != nil {
				t.Fatal(err)
			}
			var devs []store.Device
			for i := range 2 {
				res, err := s.Enroll(ctx, store.EnrollParams{TokenHash: []byte("t"), Now: storetest.FleetNow.Add(-1),
					NewDeviceID: fmt.Sprint("d", i), Sign: func(string) ([]byte, string, error) { return nil, "s", nil }})
				if err != nil {
					t.Fatal(err)
				}
				devs = append(devs, res.Device)
			}
			if _, err := s.w.ExecContext(ctx, "UPDATE devices SET "+tc.column+" = ? WHERE id = 'd0'", tc.value); err != nil {
				t.Fatal(err)
			}
			_, err := s.GetDevice(ctx, "d0")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "d0") {
				t.Errorf("GetDevice of a corrupt row: err = %v, want it to mention d0 and %q", err, tc.want)
			}
			if _, err := s.ListDevices(ctx, store.DeviceFilter{}); err == nil {
				t.Error("ListDevices over a corrupt row succeeded")
			}
			in := store.ReportInput{DeviceID: "d0", CertSerial: "s", ReceivedAt: storetest.FleetNow, Verdict: store.VerdictCompliant}
			_, ingestErr := s.IngestReports(ctx, []store.ReportInput{in})
			if tc.column == "facts" {
				ingestErr = nil // ingest does not read facts
			} else if ingestErr == nil {
				t.Error("IngestReports onto a corrupt row succeeded")
			}
			in.DeviceID = "d1"
			if _, err := s.IngestReports(ctx, []store.ReportInput{in}); err != nil {
				t.Errorf("a healthy device's report failed: %v", err)
			}
			if _, err := s.GetDevice(ctx, "d1"); err != nil {
				t.Errorf("GetDevice of a healthy row: %v", err)
			}
		})
	}
	t.Run("event blob", func(t *testing.T) {
		s := openTest(t)
		ctx := t.Context()
		if _, err := s.w.ExecContext(ctx, "INSERT INTO devices (id, enrolled_at, cert_serial, verdict) VALUES ('d', 0, 's', 'NEVER_REPORTED')"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, "INSERT INTO events (device_id, event_id, received_at, event) VALUES ('d', 'e', 0, x'ffff')"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ListEvents(ctx, store.EventFilter{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("ListEvents over a corrupt event: err = %v", err)
		}
	})
}

// seedFleet bulk-inserts devices in one transaction (test-only: the store
// never creates devices except by enrolment).
func seedFleet(ctx context.Context, s *Store, ds []store.Device) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO devices (id, machine_id, hostname, facts, enrolled_at, cert_serial,
			last_seen, verdict, reasons, failing_since, policy_version, controls, revoked_at, revoked_reason)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, d := range ds {
			facts, err := codec.Marshal(d.Facts)
			if err != nil {
				return err
			}
			controls, err := codec.Controls(d.Controls)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, d.ID, d.Facts.GetMachineId(), d.Facts.GetHostname(), facts,
				d.EnrolledAt.UnixMicro(), d.CertSerial, codec.Micros(d.LastSeen), d.Verdict, codec.Reasons(d.Reasons),
				codec.Micros(d.FailingSince), d.PolicyVersion, controls, codec.Micros(d.RevokedAt), d.RevokedReason); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "ANALYZE"); err != nil {
			return err
		}
		return nil
	})
}

const fleetSize = 100_000

// fleet is the 100,000-device store the fleet benchmarks share; seeding
// takes seconds, so it is built once per test binary and removed by
// TestMain.
var fleet struct {
	once sync.Once
	dir  string
	st   *Store
	err  error
}

func fleetStore(b *testing.B) *Store {
	fleet.once.Do(func() {
		if fleet.dir, fleet.err = os.MkdirTemp("", "mamori-sqlite-bench-"); fleet.err != nil {
			return
		}
		if fleet.st, fleet.err = Open(context.Background(), filepath.Join(fleet.dir, "fleet.db")); fleet.err != nil {
			return
		}
		fleet.err = seedFleet(context.Background(), fleet.st, storetest.Fleet(fleetSize))
	})
	if fleet.err != nil {
		b.Fatal(fleet.err)
	}
	return fleet.st
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fleet.st != nil {
		fleet.st.Close()
	}
	if fleet.dir != "" {
		os.RemoveAll(fleet.dir)
	}
	os.Exit(code)
}

func BenchmarkIngest(b *testing.B) {
	storetest.BenchIngest(b, func(b *testing.B) store.Store { return openTest(b) })
}

// BenchmarkSingleRowDurableCommit is the baseline: one durable commit of
// one row, with the same pragmas as the store.
func BenchmarkSingleRowDurableCommit(b *testing.B) {
	s := openTest(b)
	if _, err := s.w.ExecContext(b.Context(), "CREATE TABLE bench (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.w.ExecContext(b.Context(), "INSERT INTO bench (v) VALUES (?)", []byte("0123456789abcdef")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func BenchmarkCountFleet(b *testing.B) {
	storetest.BenchCountFleet(b, fleetStore(b), fleetSize)
}

func BenchmarkListNoncompliant(b *testing.B) {
	storetest.BenchListNoncompliant(b, fleetStore(b), fleetSize)
}

func BenchmarkTouchDevices(b *testing.B) {
	storetest.BenchTouchDevices(b, openTest(b))
}
