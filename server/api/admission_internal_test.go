package api

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/retryinfo"
)

func fromAddr(addr string) context.Context {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

// Past MaxInFlight an enrolment is refused at once (not queued) with a
// retry hint; a released slot admits the next one.
func TestAdmissionInFlightCap(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), admission: newAdmission(EnrollLimits{MaxInFlight: 2, RetryAfter: 1500 * time.Millisecond}, time.Now)}
	ctx := fromAddr("192.0.2.1:1000")
	r1, err := s.admitEnroll(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admitEnroll(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.admitEnroll(ctx, "m3")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third in flight: %v, want ResourceExhausted", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("refusal took %v: it must not wait", took)
	}
	if d, ok := retryinfo.Delay(err); !ok || d != 1500*time.Millisecond {
		t.Errorf("retry hint %v, %v; want 1.5s", d, ok)
	}
	r1()
	if _, err := s.admitEnroll(ctx, "m3"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// Buckets refill at their rate, IPv6 sources share a /64, and the tables
// stay bounded under a flood of keys.
func TestAdmissionBuckets(t *testing.T) {
	b := newBuckets(2, 2) // 2/s, burst 2
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for i := range 2 {
		if ok, _ := b.take("k", t0); !ok {
			t.Fatalf("take %d within the burst refused", i+1)
		}
	}
	ok, wait := b.take("k", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%v, want refused with 500ms", ok, wait)
	}
	if ok, _ := b.take("k", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refilled token refused")
	}
	if ok, _ := b.take("k", t0.Add(-time.Hour)); ok {
		t.Fatal("a clock that went back refilled the bucket")
	}

	if a, b := sourceKey(fromAddr("[2001:db8:1:2::1]:5")), sourceKey(fromAddr("[2001:db8:1:2:ffff::9]:6")); a != b || a != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 keys %q and %q, want one /64", a, b)
	}
	if k := sourceKey(fromAddr("[::ffff:192.0.2.7]:5")); k != "192.0.2.7" {
		t.Errorf("mapped IPv4 key %q", k)
	}

	flood := newBuckets(1, 1)
	for i := range maxBuckets + 1000 {
		flood.take(fmt.Sprintf("k%d", i), t0)
	}
	if n := len(flood.m); n > maxBuckets {
		t.Errorf("%d buckets, want at most %d", n, maxBuckets)
	}
	// Once they refill, the sweep makes room again.
	if ok, _ := flood.take("late", t0.Add(time.Minute)); !ok {
		t.Error("a new key after the flood refilled was refused")
	}
}
