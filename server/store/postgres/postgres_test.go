package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/pgtest"
	"github.com/mamori-dev/mamori/server/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openTest(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), pgtest.DSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, _ := s.pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestMigrationsConcurrent: servers starting together on one empty
// database all open it, and the schema is applied once.
func TestMigrationsConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			s, err := Open(t.Context(), dsn)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	s, err := Open(t.Context(), dsn) // and again, idempotently
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Every embedded migration, once, in order.
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for i := range files {
		want = append(want, i+1)
	}
	if got := versions(t, s); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(t.Context(), dsn); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a newer schema: err = %v, want a 'newer' error", err)
	}
}

// TestServerIsLocalOnly: the throwaway server has no TCP listener and
// runs with fsync, as the benchmarks and durability claims assume.
func TestServerIsLocalOnly(t *testing.T) {
	s := openTest(t)
	for setting, want := range map[string]string{"listen_addresses": "", "fsync": "on", "synchronous_commit": "on"} {
		var got string
		if err := s.pool.QueryRow(t.Context(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestOpenBadDSN(t *testing.T) {
	if s, err := Open(t.Context(), "postgres://u:secret@/db?host=/nonexistent-mamori&connect_timeout=1"); err == nil {
		s.Close()
		t.Fatal("Open of an unreachable server succeeded")
	} else if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

// TestCorruptRows: a damaged row gives an error naming the device, never a
// panic, and other devices keep working.
func TestCorruptRows(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for _, q := range []string{
		"INSERT INTO devices (id, enrolled_at, cert_serial, verdict, controls) VALUES ('bad', now(), 's', 'NEVER_REPORTED', '\\x0aff01')",
		"INSERT INTO devices (id, enrolled_at, cert_serial, verdict) VALUES ('good', now(), 's', 'NEVER_REPORTED')",
		"INSERT INTO events (device_id, event_id, received_at, event) VALUES ('good', 'e', now(), '\\xffff')",
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetDevice(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "bad") || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("GetDevice of a corrupt row: err = %v", err)
	}
	in := store.ReportInput{DeviceID: "bad", CertSerial: "s", ReceivedAt: storetest.FleetNow, Verdict: store.VerdictCompliant}
	if _, err := s.IngestReports(ctx, []store.ReportInput{in}); err == nil {
		t.Error("IngestReports onto a corrupt row succeeded")
	}
	in.DeviceID = "good"
	if _, err := s.IngestReports(ctx, []store.ReportInput{in}); err != nil {
		t.Errorf("a healthy device's report failed: %v", err)
	}
	if _, err := s.ListEvents(ctx, store.EventFilter{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("ListEvents over a corrupt event: err = %v", err)
	}
}

// seedFleet bulk-loads devices with COPY (test-only: the store never
// creates devices except by enrolment).
func seedFleet(ctx context.Context, s *Store, ds []store.Device) error {
	rows := make([][]any, len(ds))
	for i, d := range ds {
		facts, err := codec.Marshal(d.Facts)
		if err != nil {
			return err
		}
		controls, err := codec.Controls(d.Controls)
		if err != nil {
			return err
		}
		rows[i] = []any{d.ID, d.Facts.GetMachineId(), d.Facts.GetHostname(), facts, d.EnrolledAt, d.CertSerial,
			tz(d.LastSeen), d.Verdict, codec.Reasons(d.Reasons), tz(d.FailingSince), d.PolicyVersion, controls,
			tz(d.RevokedAt), d.RevokedReason}
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"devices"}, []string{"id", "machine_id", "hostname", "facts",
		"enrolled_at", "cert_serial", "last_seen", "verdict", "reasons", "failing_since", "policy_version",
		"controls", "revoked_at", "revoked_reason"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	_, err = s.pool.Exec(ctx, "VACUUM ANALYZE devices")
	return err
}

const fleetSize = 100_000

// fleet is the 100,000-device database the fleet benchmarks share; it
// lives as long as the test server (pgtest.Main).
var fleet struct {
	once sync.Once
	st   *Store
	err  error
}

func fleetStore(b *testing.B) *Store {
	fleet.once.Do(func() {
		dsn := pgtest.SharedDSN(b) // may skip b: then fleet.st stays nil
		if fleet.st, fleet.err = Open(context.Background(), dsn); fleet.err != nil {
			return
		}
		fleet.err = seedFleet(context.Background(), fleet.st, storetest.Fleet(fleetSize))
	})
	if fleet.err != nil {
		b.Fatal(fleet.err)
	}
	if fleet.st == nil {
		b.Skip("no PostgreSQL for the fleet benchmarks")
	}
	return fleet.st
}

func BenchmarkIngest(b *testing.B) {
	storetest.BenchIngest(b, func(b *testing.B) store.Store { return openTest(b) })
}

// BenchmarkSingleRowDurableCommit is the baseline: one durable commit of
// one row.
func BenchmarkSingleRowDurableCommit(b *testing.B) {
	s := openTest(b)
	if _, err := s.pool.Exec(b.Context(), "CREATE TABLE bench (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v bytea)"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.pool.Exec(b.Context(), "INSERT INTO bench (v) VALUES ($1)", []byte("0123456789abcdef")); err != nil {
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
