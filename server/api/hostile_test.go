package api_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/servertest"
)

// rawCodec sends bytes as they are, to put malformed protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func heapAfterGC() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// hostileReports are reports an attacker with a device certificate (or a
// broken agent) could send, each with the status it must get.
func hostileReports() []struct {
	name string
	req  *mamoriv1.ReportRequest
	code codes.Code
} {
	hugeAttrs := make(map[string]string, 100_000)
	for i := range 100_000 {
		hugeAttrs[fmt.Sprintf("k%06d", i)] = "v"
	}
	manyStatuses := make([]*mamoriv1.ControlStatus, 20_000)
	for i := range manyStatuses {
		manyStatuses[i] = &mamoriv1.ControlStatus{Control: fmt.Sprintf("c%05d", i), State: 1}
	}
	manyEvents := make([]*mamoriv1.Event, 30_000)
	for i := range manyEvents {
		manyEvents[i] = &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Kind: "k"}
	}
	long := strings.Repeat("x", api.MaxMessageBytes-1024)
	return []struct {
		name string
		req  *mamoriv1.ReportRequest
		code codes.Code
	}{
		{"event with 100,000 attributes", &mamoriv1.ReportRequest{Events: []*mamoriv1.Event{{Id: uuid.NewString(), Time: timestamppb.Now(), Kind: "x", Attributes: hugeAttrs}}}, codes.InvalidArgument},
		{"20,000 statuses", &mamoriv1.ReportRequest{Statuses: manyStatuses}, codes.InvalidArgument},
		{"30,000 events", &mamoriv1.ReportRequest{Events: manyEvents}, codes.InvalidArgument},
		{"string just under the message limit", &mamoriv1.ReportRequest{Facts: &mamoriv1.DeviceFacts{Hostname: long}}, codes.InvalidArgument},
		{"message over the limit", &mamoriv1.ReportRequest{MfaBundleVersion: long + strings.Repeat("y", 8<<10)}, codes.ResourceExhausted},
	}
}

// Hostile and malformed messages get a clear status at once, the server
// keeps serving, and what it holds afterwards does not grow with them:
// heap after GC stays within a bound after hundreds of such calls,
// several at a time, and no goroutine is left behind.
func TestHostileInputBoundedMemory(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-hostile")
	cases := hostileReports()
	conn := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost"))

	// Warm up (connections, policy cache, TLS session) before measuring.
	if _, err := d.Client.Report(ctx, agentReport()); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	before := heapAfterGC()

	malformed := []struct {
		name string
		raw  []byte
	}{
		{"length beyond the end", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"truncated varint", bytes.Repeat([]byte{0x80}, 64)},
		{"unknown group nested 100,000 deep", append(bytes.Repeat([]byte{0xfb, 0x3e}, 100_000), bytes.Repeat([]byte{0xfc, 0x3e}, 100_000)...)},
		{"invalid UTF-8 in a string", []byte{0x3a, 0x02, 0xff, 0xfe}},
	}
	const rounds = 20
	var wg sync.WaitGroup
	errs := make(chan error, rounds*(len(cases)+len(malformed)+1))
	for r := range rounds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tc := range cases {
				_, err := d.Client.Report(ctx, tc.req, grpc.MaxCallSendMsgSize(16<<20))
				if c := status.Code(err); c != tc.code {
					errs <- fmt.Errorf("%s: %v, want %v", tc.name, err, tc.code)
				}
			}
			for _, m := range malformed {
				var out []byte
				err := conn.Invoke(ctx, mamoriv1.AgentService_Report_FullMethodName, m.raw, &out, grpc.ForceCodec(rawCodec{}))
				if c := status.Code(err); c != codes.Internal || !strings.Contains(status.Convert(err).Message(), "unmarshal") {
					errs <- fmt.Errorf("%s: %v, want Internal (unmarshalling)", m.name, err)
				}
			}
			if r%5 == 0 {
				// 64 KiB of headers: refused (the server takes 16 KiB).
				hctx := metadata.AppendToOutgoingContext(ctx, "x-pad", strings.Repeat("p", 64<<10))
				c, cancel := context.WithTimeout(hctx, 10*time.Second)
				defer cancel()
				if _, err := d.Client.Report(c, agentReport()); err == nil {
					errs <- fmt.Errorf("64 KiB of headers accepted")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Still serving, on the same connection.
	if _, err := d.Client.Report(ctx, agentReport()); err != nil {
		t.Fatalf("after the hostile calls: %v", err)
	}
	// Each hostile message is answered at once: timed one call at a time,
	// since twenty at once queue behind each other on two cores (under
	// -race the last of twenty 100,000-attribute calls, client encoding
	// included, came back after 10 s while the first took under one).
	for _, tc := range cases {
		start := time.Now()
		_, err := d.Client.Report(ctx, tc.req, grpc.MaxCallSendMsgSize(16<<20))
		took := time.Since(start)
		if c := status.Code(err); c != tc.code {
			t.Errorf("%s on its own: %v, want %v", tc.name, err, tc.code)
		}
		if took > 10*time.Second {
			t.Errorf("%s on its own: answered after %v", tc.name, took)
		}
		t.Logf("%s on its own: %v", tc.name, took.Round(time.Millisecond))
	}
	after := heapAfterGC()
	runtime.KeepAlive(cases) // alive in both measurements
	const bound = 32 << 20
	growth := int64(after) - int64(before)
	t.Logf("heap after GC: %d KiB before, %d KiB after %d hostile calls (growth %d KiB, bound %d KiB)",
		before>>10, after>>10, rounds*(len(cases)+len(malformed))+len(cases), growth>>10, bound>>10)
	if growth > bound {
		t.Errorf("heap grew by %d KiB after hostile input, bound %d KiB", growth>>10, bound>>10)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+20 {
		t.Errorf("%d goroutines after the hostile calls, %d before", n, goroutines)
	}
	if dev := deviceState(t, h, d.ID); dev.Compliance == mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED {
		t.Errorf("device state unreadable after hostile input")
	}
}
