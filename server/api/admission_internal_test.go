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
	s := &AgentService{core: core{log: slog.New(slog.DiscardHandler)}, admission: newAdmission(EnrollLimits{MaxInFlight: 2, RetryAfter: 1500 * time.Millisecond}, time.Now)}
	ctx := fromAddr("192.0.2.1:1000")
	r1, err := s.admitEnroll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admitEnroll(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.admitEnroll(ctx)
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
	if _, err := s.admitEnroll(ctx); err != nil {
		t.Fatalf("after a release: %v", err)
	}

	// A crowd refused at once is given slots spread at the enrolment
	// rate, not one hint for all.
	a := newAdmission(EnrollLimits{MaxInFlight: 1}, time.Now)
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var last time.Duration
	for i := range 1000 {
		d := a.nextSlot(now)
		if d <= last {
			t.Fatalf("slot %d at %v, not after %v", i, d, last)
		}
		last = d
	}
	if want := time.Duration(1000 / initialEnrollRate * float64(time.Second)); last < want*9/10 || last > want*11/10 {
		t.Errorf("1,000 refused callers spread over %v, want about %v", last, want)
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
	// Callers refused together are scheduled one token apart.
	if _, wait := b.take("k", t0); wait != time.Second {
		t.Fatalf("second refused caller: wait %v, want the next slot at 1s", wait)
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

// Past MaxInFlight, up to MaxQueued callers wait (at most QueueWait) for
// a place; the next one is refused at once, and a waiter whose time runs
// out is refused with a retry hint.
func TestAdmissionBoundedQueue(t *testing.T) {
	s := &AgentService{core: core{log: slog.New(slog.DiscardHandler)}, admission: newAdmission(EnrollLimits{
		MaxInFlight: 1, MaxQueued: 1, QueueWait: 300 * time.Millisecond, RetryAfter: time.Second}, time.Now)}
	ctx := fromAddr("192.0.2.1:1000")
	r1, err := s.admitEnroll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		r, err := s.admitEnroll(ctx)
		if err == nil {
			r()
		}
		waited <- err
	}()
	for s.admission.queued.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if _, err := s.admitEnroll(ctx); status.Code(err) != codes.ResourceExhausted || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("caller past the queue: %v after %v, want ResourceExhausted at once", err, time.Since(start))
	}
	time.Sleep(50 * time.Millisecond)
	r1()
	if err := <-waited; err != nil {
		t.Fatalf("queued caller after a release: %v", err)
	}

	r1, _ = s.admitEnroll(ctx)
	defer r1()
	start = time.Now()
	_, err = s.admitEnroll(ctx)
	if took := time.Since(start); status.Code(err) != codes.ResourceExhausted || took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("queued caller whose wait ran out: %v after %v, want ResourceExhausted after 300ms", err, took)
	}
	if _, ok := retryinfo.Delay(err); !ok {
		t.Error("no retry hint")
	}
}
