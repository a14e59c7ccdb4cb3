package hatest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/loadgen"
	"github.com/mamori-dev/mamori/server/serve"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// fastLoad is a load that keeps the server's ingest busy: 40 terminals
// each reporting every 50 ms (800 reports/s offered, more than the server
// here commits), most reports carrying events.
func fastLoad(t *testing.T, s *server) loadgen.Config {
	t.Helper()
	pool, _ := caPool(t, s.data)
	cfg := loadgen.DefaultConfig()
	cfg.Server, cfg.AdminServer, cfg.CA, cfg.AdminToken = s.addr, s.adminAddr, pool, s.adminToken(t)
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

// The PostgreSQL postmaster is SIGKILLed (no shutdown, crash recovery on
// restart) while two servers on it take reports, each from its own fleet.
// Meanwhile the servers answer with a status that tells the agents to come
// back (Unavailable, never Internal) and no call hangs; once the database
// is back, both servers use it again without a restart of their own; every
// acknowledged event is stored once.
func TestPostgresKilledUnderLoad(t *testing.T) {
	testenv.Short(t)
	db := pgtest.DSN(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	a := startServer(t, dataA, db, freeAddr(t))
	shareCA(t, dataA, dataB) // production: the same CA files on every server
	b := startServer(t, dataB, db, freeAddr(t))
	// One database, one CA and one set of operators: b's fleet uses a's
	// CA and token against b's address.
	cfgA, cfgB := fastLoad(t, a), fastLoad(t, a)
	cfgB.Server = b.addr
	cfgA.StopServer = func(context.Context) error { pgtest.Kill(t); return nil }
	cfgA.Down = 2 * time.Second
	cfgA.StartServer = func(context.Context) error { pgtest.Start(t); return nil }
	// b's fleet reports steadily across a's kill and restart; its failed
	// reports are expected, what counts is what it acknowledged.
	cfgB.Mode, cfgB.Duration = loadgen.ModeSteady, 4*time.Second
	type out struct {
		res *loadgen.Result
		err error
	}
	bDone := make(chan out, 1)
	go func() {
		res, err := loadgen.Run(context.Background(), cfgB)
		bDone <- out{res, err}
	}()
	resA, err := loadgen.Run(context.Background(), cfgA)
	checkLoad(t, resA, err)
	if resA.Storm.FailedAttempts == 0 {
		t.Errorf("no report failed while PostgreSQL was down")
	}
	ob := <-bDone
	if ob.err != nil {
		t.Fatalf("load on the second server: %v", ob.err)
	}
	if ob.res.Verify == nil || ob.res.Verify.Acked == 0 || ob.res.Verify.Missing != 0 || ob.res.Verify.Duplicates != 0 {
		t.Fatalf("second server's verification: %+v", ob.res.Verify)
	}
	for name, res := range map[string]*loadgen.Result{"first": resA, "second": ob.res} {
		for code, n := range res.Reports.Errors {
			switch code {
			case "Internal", "Unknown":
				t.Errorf("%s server: %d reports answered %s while PostgreSQL was down; want Unavailable", name, n, code)
				for _, srv := range []*server{a, b} {
					t.Logf("%s's log says:\n%s", srv.addr, grepLines(srv.output(), "internal error", 5))
				}
			case "DeadlineExceeded":
				t.Errorf("%s server: %d reports hung until their %v timeout", name, n, cfgA.CallTimeout)
			}
		}
		t.Logf("%s server: errors while PostgreSQL was down: %v", name, res.Reports.Errors)
	}
}

// The same on PostgreSQL: mamori-server is SIGKILLed while reports are
// being committed and started again on the same database: every event it
// acknowledged is stored, none twice, and every terminal reports again.
func TestServerKilledDuringIngestPostgres(t *testing.T) {
	testenv.Short(t)
	srv := startServer(t, t.TempDir(), pgtest.DSN(t), freeAddr(t))
	cfg := fastLoad(t, srv)
	cfg.StopServer = func(context.Context) error { srv.kill(); return nil }
	cfg.StartServer = func(context.Context) error { srv.start(); return nil }
	res, err := loadgen.Run(context.Background(), cfg)
	checkLoad(t, res, err)
	if res.Storm.FailedAttempts == 0 {
		t.Errorf("no report failed around the kill: the kill did not land during ingest")
	}
}

// stopBound is what a graceful stop under load may take. The server waits
// only for calls in progress (each a commit of a few milliseconds) and
// then closes the remaining connections; before, it waited for every
// connection to go away and took ~11 s with 10,000 terminals.
const stopBound = 3 * time.Second

// stuckConns opens n connections that finish TLS and the HTTP/2 preface
// and then never read again: clients that will not acknowledge a GOAWAY
// (a hung terminal, a hostile peer). gRPC's GracefulStop alone waits for
// each of them (up to a minute).
func stuckConns(t *testing.T, addr string, pool *x509.CertPool, n int) {
	t.Helper()
	for range n {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatalf("stuck connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		if err := http2.NewFramer(c, c).WriteSettings(); err != nil {
			t.Fatal(err)
		}
	}
}

// mamori-server is stopped with SIGTERM (what a service manager sends)
// while 200 connected terminals report 800 times a second and 20 more
// connections never read: the process exits within stopBound, every
// report it acknowledged is stored once, and every terminal reports again
// after the restart. (With GracefulStop alone the stuck connections held
// the stop for its full 10 s bound.)
func TestGracefulStopUnderLoad(t *testing.T) {
	testenv.Short(t)
	srv := startServer(t, t.TempDir(), "", freeAddr(t))
	cfg := fastLoad(t, srv)
	cfg.Terminals, cfg.Interval = 200, 250*time.Millisecond
	var took time.Duration
	pool, _ := caPool(t, srv.data)
	cfg.StopServer = func(context.Context) error {
		stuckConns(t, srv.addr, pool, 20)
		time.Sleep(100 * time.Millisecond) // the server has accepted them
		start := time.Now()
		srv.stop()
		took = time.Since(start)
		return nil
	}
	cfg.StartServer = func(context.Context) error { srv.start(); return nil }
	res, err := loadgen.Run(context.Background(), cfg)
	checkLoad(t, res, err)
	t.Logf("graceful stop under load took %v (calls took p99 %v during the run)", took, res.Reports.P99)
	// The stop waits for the calls in progress (each is committed before
	// it is answered) and for nothing else. On a machine that keeps up
	// those take milliseconds and the bound is stopBound; on one so loaded
	// that calls queue for seconds (CI once saw p50 5 s, p99 8.3 s, and a
	// 3.6 s stop), the calls in progress need that long too.
	if bound := stopBound + res.Reports.P99; took == 0 || took > bound {
		t.Errorf("graceful stop took %v, want at most %v (%v + the p99 of a call)", took, bound, stopBound)
	}
	// Whatever the load: the stuck connections never hold the stop. Before
	// the fix they held it for the whole stop timeout.
	if took >= serve.DefaultStopTimeout {
		t.Errorf("graceful stop took %v: held for the stop timeout (%v), by connections that never read", took, serve.DefaultStopTimeout)
	}
}

// grepLines returns up to n distinct lines of text that contain pattern.
func grepLines(text, pattern string, n int) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, pattern) && !seen[l] && len(out) < n {
			seen[l] = true
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
