package hatest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/loadgen"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// fastLoad is a load that keeps the server's ingest busy: 40 terminals
// each reporting every 50 ms (800 reports/s offered, more than the server
// here commits), most reports carrying events.
func fastLoad(t *testing.T, s *server) loadgen.Config {
	t.Helper()
	pool, _ := caPool(t, s.data)
	cfg := loadgen.DefaultConfig()
	cfg.Server, cfg.CA, cfg.AdminToken = s.addr, pool, s.adminToken(t)
	cfg.Mode, cfg.Terminals, cfg.Interval, cfg.Duration = loadgen.ModeReconnect, 40, 50*time.Millisecond, 1500*time.Millisecond
	cfg.Mix = loadgen.Mix{USBBlocked: 0.5, MFAFailure: 0.3, StateFlip: 0.1}
	cfg.CallTimeout = 10 * time.Second
	cfg.BackoffBase, cfg.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	cfg.StormTimeout, cfg.DrainTimeout = 45*time.Second, 45*time.Second
	return cfg
}

func checkLoad(t *testing.T, res *loadgen.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var sb strings.Builder
	res.WriteSummary(&sb)
	t.Logf("load:\n%s", sb.String())
	if !res.OK {
		t.Fatalf("load found problems: %v", res.Problems)
	}
	if res.Verify == nil || res.Verify.Acked == 0 || res.Verify.Missing != 0 || res.Verify.Duplicates != 0 {
		t.Fatalf("verification: %+v", res.Verify)
	}
	if res.Storm == nil || res.Storm.Back != res.Terminals {
		t.Fatalf("not every terminal reported again: %+v", res.Storm)
	}
}

// mamori-server (SQLite) is SIGKILLed while reports are being committed
// and started again on the same data: every event it acknowledged is
// stored, none twice, and every terminal reports again.
func TestServerKilledDuringIngest(t *testing.T) {
	testenv.Short(t)
	srv := startServer(t, t.TempDir(), "", freeAddr(t))
	cfg := fastLoad(t, srv)
	cfg.StopServer = func(context.Context) error { srv.kill(); return nil }
	cfg.StartServer = func(context.Context) error { srv.start(); return nil }
	res, err := loadgen.Run(context.Background(), cfg)
	checkLoad(t, res, err)
	if res.Storm.FailedAttempts == 0 {
		t.Errorf("no report failed around the kill: the kill did not land during ingest")
	}
}

// PostgreSQL is restarted (fast shutdown: every session cut) under load.
// Meanwhile reports fail with a status at once — no call hangs until its
// timeout — the terminals retry, and once the database is back the server
// uses it again without a restart of its own. Every acknowledged event is
// stored once.
func TestPostgresRestartUnderLoad(t *testing.T) {
	testenv.Short(t)
	srv := startServer(t, t.TempDir(), pgtest.DSN(t), freeAddr(t))
	cfg := fastLoad(t, srv)
	cfg.StopServer = func(context.Context) error { pgtest.Shutdown(t); return nil }
	cfg.Down = 2 * time.Second
	cfg.StartServer = func(context.Context) error { pgtest.Start(t); return nil }
	res, err := loadgen.Run(context.Background(), cfg)
	checkLoad(t, res, err)
	if res.Storm.FailedAttempts == 0 {
		t.Errorf("no report failed while PostgreSQL was down")
	}
	for code, n := range res.Reports.Errors {
		if code == "DeadlineExceeded" {
			t.Errorf("%d reports hung until their %v timeout while the database was down", n, cfg.CallTimeout)
		}
	}
	t.Logf("errors while PostgreSQL was down: %v", res.Reports.Errors)
}
