package api_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// steadyProfile: a CPU profile of the no-change phase alone
// (docs/performance.md).
var steadyProfile = flag.String("steadyprof", "", "write a CPU profile of BenchmarkSteadyState's no-change phase to this file")

// countingConn counts the bytes a connection carries both ways: TLS
// records, HTTP/2 frames and all.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func countingDialer(n *atomic.Int64) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, n}, nil
	})
}

// runParallel makes calls from conns concurrent callers (one per
// terminal), n calls in all, and returns calls/s and wire bytes per call.
func runParallel(b *testing.B, n, conns int, wire *atomic.Int64, call func(i int) error) (perSec, bytesPer float64) {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	before := wire.Load()
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := call(w); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	return float64(done.Load()) / el.Seconds(), float64(wire.Load()-before) / float64(max(1, done.Load()))
}

// agentWindow: both kinds of client dial as the agent does
// (agent/transport): a fixed 1 MiB receive window, so no BDP pings.
var agentWindow = [2]grpc.DialOption{grpc.WithInitialWindowSize(1 << 20), grpc.WithInitialConnWindowSize(1 << 20)}

// steadyFull is a full report as the benchmarks' terminals send it: ten
// controls with evidence, no events (typicalReport without its events).
func steadyFull(digest []byte, pol *mamoriv1.Policy) *mamoriv1.ReportRequest {
	r := typicalReport()
	r.Events, r.StateDigest = nil, digest
	r.PolicyDigest = "-" // the server answers with the policy
	if pol != nil {
		r.PolicyVersion, r.PolicyDigest = pol.Version, pol.Digest
	}
	return r
}

// BenchmarkSteadyStateSQLite measures, in one run over the same mutual
// TLS: the bare no-op call (grpc health check, no handler work), "no
// change" differential reports, and full reports (ten controls, no
// events); per call it reports calls/s, wire bytes (both directions, TLS
// records included) and the ratio of no-change reports to no-op calls.
// Run it with -benchtime=Nx: each phase makes N calls.
func BenchmarkSteadyStateSQLite(b *testing.B) { benchSteady(b, servertest.Options{}) }

// BenchmarkSteadyStatePostgres is the same on PostgreSQL.
func BenchmarkSteadyStatePostgres(b *testing.B) {
	benchSteady(b, servertest.Options{DB: pgtest.DSN(b), IngestWorkers: 4})
}

func benchSteady(b *testing.B, o servertest.Options) {
	h := servertest.Start(b, o)
	noop := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(mustServerCert(b, h), h.CAPool()))))
	healthpb.RegisterHealthServer(noop, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go noop.Serve(lis)
	defer noop.Stop()

	conns := benchDevices
	tok := h.Token(b, int32(conns), 0)
	var wireReport, wireNoop atomic.Int64
	reports := make([]mamoriv1.AgentServiceClient, conns)
	noops := make([]healthpb.HealthClient, conns)
	digests := make([][]byte, conns)
	var pol *mamoriv1.Policy
	for i := range conns {
		d, err := h.Enroll(b, tok, servertest.Facts(fmt.Sprintf("bench-%04d", i), fmt.Sprintf("bench-machine-%04d", i)))
		if err != nil {
			b.Fatal(err)
		}
		tlsCfg := pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost")
		reports[i] = mamoriv1.NewAgentServiceClient(h.Dial(b, tlsCfg, countingDialer(&wireReport), agentWindow[0], agentWindow[1]))
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), countingDialer(&wireNoop),
			agentWindow[0], agentWindow[1])
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		noops[i] = healthpb.NewHealthClient(cc)
		digests[i] = raw(fmt.Sprintf("state-%d", i))
		// The full report that gives the server the state; it also
		// warms the connection (TLS handshake not counted below).
		resp, err := reports[i].Report(context.Background(), steadyFull(digests[i], nil))
		if err != nil {
			b.Fatal(err)
		}
		// From now on the terminal holds the policy, as an agent does:
		// answers carry no policy.
		if p := resp.GetPolicy(); p != nil {
			pol = p
		}
		if _, err := noops[i].Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	workers := max(conns, runtime.GOMAXPROCS(0))
	b.ResetTimer()
	noopRate, noopBytes := runParallel(b, b.N, min(workers, conns), &wireNoop, func(i int) error {
		_, err := noops[i].Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	})
	var needFull atomic.Int64
	if *steadyProfile != "" {
		f, err := os.Create(*steadyProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
	steadyRate, steadyBytes := runParallel(b, b.N, conns, &wireReport, func(i int) error {
		resp, err := reports[i].Report(context.Background(), &mamoriv1.ReportRequest{
			BaseDigest: digests[i], PolicyVersion: pol.GetVersion(), PolicyDigest: pol.GetDigest()})
		if resp.GetPolicy() != nil {
			return fmt.Errorf("no-change report answered with the policy")
		}
		if resp.GetNeedFull() {
			needFull.Add(1)
		}
		return err
	})
	if *steadyProfile != "" {
		pprof.StopCPUProfile()
	}
	fullRate, fullBytes := runParallel(b, b.N, conns, &wireReport, func(i int) error {
		_, err := reports[i].Report(context.Background(), steadyFull(digests[i], pol))
		return err
	})
	b.StopTimer()
	h.Srv.FlushHeartbeats()
	if n := needFull.Load(); n > 0 {
		b.Errorf("%d no-change reports answered need_full", n)
	}
	b.ReportMetric(noopRate, "noop-calls/s")
	b.ReportMetric(steadyRate, "unchanged-reports/s")
	b.ReportMetric(fullRate, "full-reports/s")
	b.ReportMetric(steadyRate/noopRate, "unchanged/noop")
	b.ReportMetric(noopBytes, "noop-B/call")
	b.ReportMetric(steadyBytes, "unchanged-B/report")
	b.ReportMetric(fullBytes, "full-B/report")
}

func mustServerCert(b *testing.B, h *servertest.Harness) tls.Certificate {
	cert, err := h.Srv.CA().ServerCertificate(b.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return cert
}
