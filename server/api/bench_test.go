package api_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// benchDevices is how many enrolled terminals the ingest benchmarks spread
// their reports over; each has its own certificate and connection.
const benchDevices = 512

// typicalReport is one report as the issue sizes it: 10 control statuses and
// 5 new events.
func typicalReport() *mamoriv1.ReportRequest {
	now := timestamppb.Now()
	r := &mamoriv1.ReportRequest{PolicyVersion: 1}
	for i := range 10 {
		r.Statuses = append(r.Statuses, &mamoriv1.ControlStatus{
			Control: fmt.Sprintf("control-%02d", i), Mode: mamoriv1.Mode_MODE_ENFORCE,
			State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Detail: "in force",
			Evidence: map[string]string{"rule_sha256": "3f2a…", "checked": "true"}, ObservedAt: now,
		})
	}
	r.Statuses[0].Control = "agent"
	for range 5 {
		r.Events = append(r.Events, &mamoriv1.Event{Id: uuid.NewString(), Time: now, Control: "media",
			Kind: "usb_blocked", Attributes: map[string]string{"vendor": "0781", "product": "5581", "serial": "4C530001"}})
	}
	return r
}

// benchIngest drives Report from benchDevices concurrent terminals and
// reports reports/s. Every report is acknowledged only after its group
// commit, so the figure is for durable ingest.
func benchIngest(b *testing.B, o servertest.Options) { benchIngestWith(b, o, nil) }

func benchIngestWith(b *testing.B, o servertest.Options, setup func(h *servertest.Harness)) {
	h := servertest.Start(b, o)
	if setup != nil {
		setup(h)
	}
	tok := h.Token(b, benchDevices, 0)
	devs := make([]*servertest.Device, benchDevices)
	for i := range devs {
		d, err := h.Enroll(b, tok, servertest.Facts(fmt.Sprintf("bench-%04d", i), fmt.Sprintf("bench-machine-%04d", i)))
		if err != nil {
			b.Fatal(err)
		}
		devs[i] = d
	}
	var next atomic.Int64
	b.SetParallelism(max(1, benchDevices/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		d := devs[int(next.Add(1)-1)%benchDevices]
		for pb.Next() {
			if _, err := d.Client.Report(context.Background(), typicalReport()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
}

// BenchmarkNoopMTLSCall is the baseline measured in the same run: a unary
// gRPC call over the same mutual TLS with a handler that does nothing.
func BenchmarkNoopMTLSCall(b *testing.B) {
	h := servertest.Start(b, servertest.Options{})
	cert, err := h.Srv.CA().ServerCertificate(b.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(cert, h.CAPool()))))
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	tok := h.Token(b, benchDevices, 0)
	clients := make([]healthpb.HealthClient, benchDevices)
	for i := range clients {
		d, err := h.Enroll(b, tok, servertest.Facts(fmt.Sprintf("noop-%04d", i), fmt.Sprintf("noop-machine-%04d", i)))
		if err != nil {
			b.Fatal(err)
		}
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(
			credentials.NewTLS(pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost"))))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		clients[i] = healthpb.NewHealthClient(cc)
	}
	var next atomic.Int64
	b.SetParallelism(max(1, benchDevices/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1)-1)%benchDevices]
		for pb.Next() {
			if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

func BenchmarkReportIngestSQLite(b *testing.B) { benchIngest(b, servertest.Options{}) }

// PostgreSQL gains from a few transactions in flight at once.
func BenchmarkReportIngestPostgres(b *testing.B) {
	benchIngest(b, servertest.Options{DB: pgtest.DSN(b), IngestWorkers: 4})
}

// BenchmarkReportIngestSQLiteGroups is BenchmarkReportIngestSQLite with a
// group override and a group exception in force: every report then reads
// the device's group and computes its effective policy.
func BenchmarkReportIngestSQLiteGroups(b *testing.B) {
	benchIngestWith(b, servertest.Options{}, func(h *servertest.Harness) {
		admin := h.Admin(b, h.AdminToken)
		cur, err := admin.GetPolicy(context.Background(), &mamoriv1.GetPolicyRequest{})
		if err != nil {
			b.Fatal(err)
		}
		p := cur.Policy
		p.Groups = map[string]*mamoriv1.GroupPolicy{"市民課": {Controls: map[string]*mamoriv1.ControlPolicy{
			"media": {Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"storage": "block"}}}}}
		if _, err := admin.SetPolicy(context.Background(), &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "bench"}); err != nil {
			b.Fatal(err)
		}
		if _, err := admin.CreateException(context.Background(), &mamoriv1.CreateExceptionRequest{Usb: "0781:5581:BENCH", Group: "市民課",
			Reason: "bench", ExpiresAt: timestamppb.New(h.Clock.Now().Add(time.Hour))}); err != nil {
			b.Fatal(err)
		}
	})
}
