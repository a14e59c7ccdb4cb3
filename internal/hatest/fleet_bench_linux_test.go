package hatest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/loadgen"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// The fleet benchmarks of docs/performance.md: mamori-server as a process
// of its own (this binary re-executed through serve.Open), the load tool's
// simulated terminals in this process. Run once each (-benchtime 1x); they
// take minutes. MAMORI_FLEET_N and MAMORI_FLEET_DURATION override the
// number of terminals and the reporting phase of every run,
// MAMORI_FLEET_INTERVAL the interval of the steady ones.
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 60m ./internal/hatest

func fleetServer(b *testing.B, postgres bool) *server {
	dsn := ""
	if postgres {
		dsn = pgtest.DSN(b)
	}
	return startServer(b, b.TempDir(), dsn, freeAddr(b))
}

func runFleet(b *testing.B, s *server, mutate func(*loadgen.Config)) {
	pool, _ := caPool(b, s.data)
	cfg := loadgen.DefaultConfig()
	cfg.Server, cfg.AdminServer, cfg.CA, cfg.AdminToken = s.addr, s.adminAddr, pool, s.adminToken(b)
	cfg.Terminals, cfg.Interval, cfg.Duration = 10000, time.Minute, 3*time.Minute
	cfg.EnrollConcurrency = 100
	cfg.Sample = func() (loadgen.Usage, error) { return loadgen.ReadUsage(s.pid()) }
	mutate(&cfg)
	cfg.Terminals = envOr("MAMORI_FLEET_N", cfg.Terminals, strconv.Atoi)
	cfg.Duration = envOr("MAMORI_FLEET_DURATION", cfg.Duration, time.ParseDuration)
	b.ResetTimer()
	res, err := loadgen.Run(context.Background(), cfg)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	res.WriteSummary(&sb)
	b.Log("\n" + sb.String())
	switch cfg.Mode {
	case loadgen.ModeEnroll:
		b.ReportMetric(res.Enroll.Took.Seconds(), "s-all-enrolled")
		b.ReportMetric(float64(res.Enroll.Failed), "failed")
	case loadgen.ModeReconnect:
		b.ReportMetric(res.Storm.AllBackAfterUp.Seconds(), "s-all-back")
		b.ReportMetric(float64(res.Storm.GaveUp), "gave-up")
	default:
		b.ReportMetric(res.Reports.Achieved, "reports/s")
		b.ReportMetric(float64(res.Reports.P99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(res.Reports.Failed), "errors")
		if res.Server != nil {
			b.ReportMetric(res.Server.CPUPercent, "server-cpu-%")
			b.ReportMetric(float64(res.Server.PeakRSS>>20), "server-peak-MiB")
		}
	}
	if !res.OK {
		b.Errorf("problems: %v", res.Problems)
	}
}

func envOr[T any](name string, def T, parse func(string) (T, error)) T {
	if v := os.Getenv(name); v != "" {
		if x, err := parse(v); err == nil {
			return x
		}
	}
	return def
}

func steady(n int, interval, dur time.Duration) func(*loadgen.Config) {
	return func(c *loadgen.Config) {
		c.Terminals, c.Duration = n, dur
		c.Interval = envOr("MAMORI_FLEET_INTERVAL", interval, time.ParseDuration)
	}
}

// 10,000 terminals, one report a minute each, SQLite.
func BenchmarkFleetSteadySQLite(b *testing.B) {
	runFleet(b, fleetServer(b, false), steady(10000, time.Minute, 3*time.Minute))
}

// The highest steady rate measured on the 2-core machine (see
// docs/performance.md), SQLite and PostgreSQL.
func BenchmarkFleetMaxSQLite(b *testing.B) {
	runFleet(b, fleetServer(b, false), steady(10000, 10*time.Second, time.Minute))
}

func BenchmarkFleetMaxPostgres(b *testing.B) {
	runFleet(b, fleetServer(b, true), steady(10000, 10*time.Second, time.Minute))
}

// 10,000 terminals enrolling at once.
func BenchmarkFleetEnrollStorm(b *testing.B) {
	runFleet(b, fleetServer(b, false), func(c *loadgen.Config) { c.Mode, c.EnrollConcurrency = loadgen.ModeEnroll, 0 })
}

// The server restarts (SIGTERM) under 10,000 connected terminals, with
// the agent's gRPC settings as they are, and with gRPC's own reconnect
// back-off capped at 2 s (see docs/performance.md).
func BenchmarkFleetReconnectStorm(b *testing.B) {
	for _, grpcMax := range []time.Duration{0, 2 * time.Second} {
		b.Run("grpc-max-backoff="+grpcMax.String(), func(b *testing.B) {
			s := fleetServer(b, false)
			runFleet(b, s, func(c *loadgen.Config) {
				c.Mode, c.Duration, c.ConnectBackoffMax = loadgen.ModeReconnect, time.Minute, grpcMax
				c.StopServer = func(context.Context) error { s.stop(); return nil }
				c.StartServer = func(context.Context) error { s.start(); return nil }
			})
		})
	}
}
