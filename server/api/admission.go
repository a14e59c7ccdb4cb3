package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/mamori-dev/mamori/internal/retryinfo"
)

// EnrollLimits bound what enrolment may cost the server. An enrolment is
// the expensive call an unauthenticated caller can make (a token lookup,
// a signature and a commit behind the database's writer), so it is
// admitted in three steps, each refused at once, never queued:
//
//   - a token bucket per source address (IPv6 by /64): one host cannot
//     take the whole enrolment capacity or probe tokens quickly;
//   - a token bucket per machine ID: one terminal (or a script replaying
//     its facts) cannot enrol in a loop;
//   - a cap on enrolments being worked on at once (admission control),
//     with a short, bounded wait for a free place: at most MaxQueued
//     callers wait, each at most QueueWait (far inside the agent's 30 s
//     call timeout); past that the call is answered ResourceExhausted
//     with a retry hint (google.rpc.RetryInfo) at once, instead of
//     waiting behind the writer until the caller's deadline passes and it
//     retries into the same queue.
//
// A refusal is ResourceExhausted with a RetryInfo hint, and the hints are
// a schedule, not a constant: each refused caller is given the next free
// slot at the rate the server can take them (the bucket's rate, or the
// measured enrolment rate for the in-flight cap), so a crowd that was
// refused at once comes back spread out instead of all together. Agents
// and mamori-loadgen wait the hint (plus a little jitter) before trying
// again. A zero rate or cap switches that step off.
type EnrollLimits struct {
	PerSourceRate   float64 // enrolments a second per source address
	PerSourceBurst  int
	PerMachineRate  float64 // enrolments a second per machine ID
	PerMachineBurst int
	MaxInFlight     int // enrolments being worked on at once
	// MaxQueued callers may wait up to QueueWait for a place in flight.
	MaxQueued int
	QueueWait time.Duration
	// RetryAfter is the least wait a refusal asks for.
	RetryAfter time.Duration
}

// DefaultEnrollLimits suit one server enrolling a whole municipality at
// once. The numbers, and why:
//
//   - per source 500/s, burst 2,000: a rollout may come from one address
//     (a NAT, a proxy, the load tool on loopback), so this must not be
//     what slows it: it is above one server's enrolment rate (~250–400/s
//     on SQLite here), and the in-flight cap below is what protects the
//     server. Measured with 2,000 terminals at once from one address:
//     6.7 s with no per-source limit, 12.1 s with 300/s, burst 1,000 —
//     each refused caller pays a second TLS handshake. It still keeps one
//     host to about one server's worth of enrolments, and (with the
//     per-machine limit) makes token guessing slow; tokens remain the gate.
//   - per machine 1 per 5 s, burst 6: an attested enrolment is two calls,
//     and a retry after a lost answer a third; an agent's back-off starts
//     at 1 s, so a normal enrolment never meets this limit. Renew uses
//     the same limit per device.
//   - 64 in flight: SQLite commits one enrolment at a time (~5 ms each),
//     so 64 waiting is ~0.3 s of queue, far inside the agent's 30 s call
//     timeout; PostgreSQL runs several at once and needs no more.
//   - 1,024 more may wait up to 10 s for a place: at ~200 enrolments/s
//     they are through in ~5 s, and a caller that waited did not pay a
//     second TLS handshake (on a busy 2-core server the handshakes of
//     refused callers coming back cost more than the enrolments). Each
//     waiting caller holds a connection and a goroutine (~50 KiB).
//   - retry after at least 1 s; a refused crowd is scheduled further out
//     at the rate enrolments complete.
func DefaultEnrollLimits() EnrollLimits {
	return EnrollLimits{
		PerSourceRate: 500, PerSourceBurst: 2000,
		PerMachineRate: 0.2, PerMachineBurst: 6,
		MaxInFlight: 64, MaxQueued: 1024, QueueWait: 10 * time.Second,
		RetryAfter: time.Second,
	}
}

// Validate checks the limits.
func (l EnrollLimits) Validate() error {
	var errs []error
	if l.PerSourceRate < 0 || l.PerSourceRate > 0 && l.PerSourceBurst < 1 {
		errs = append(errs, errors.New("--enroll-per-source-rate must be ≥ 0, with a burst ≥ 1 when set"))
	}
	if l.PerMachineRate < 0 || l.PerMachineRate > 0 && l.PerMachineBurst < 1 {
		errs = append(errs, errors.New("--enroll-per-machine-rate must be ≥ 0, with a burst ≥ 1 when set"))
	}
	if l.MaxInFlight < 0 {
		errs = append(errs, errors.New("--enroll-max-in-flight must be ≥ 0 (0: no cap)"))
	}
	if l.MaxQueued < 0 || l.QueueWait < 0 || l.QueueWait > time.Minute {
		errs = append(errs, errors.New("--enroll-max-queued must be ≥ 0 and --enroll-queue-wait between 0 and 1m"))
	}
	if l.RetryAfter < 0 || l.RetryAfter > retryinfo.MaxDelay {
		errs = append(errs, fmt.Errorf("--enroll-retry-after must be between 0 and %v", retryinfo.MaxDelay))
	}
	return errors.Join(errs...)
}

// maxBuckets bounds each bucket table; past it, full (idle) buckets are
// swept, and if it is still full a new key is refused like an empty
// bucket: memory stays bounded under a flood of addresses or machine IDs.
const maxBuckets = 1 << 16

// maxKeyLen bounds a machine ID used as a key (validation comes later).
const maxKeyLen = 128

type admission struct {
	lim             EnrollLimits
	now             func() time.Time
	inflight        chan struct{} // nil: no cap
	source, machine *buckets      // nil: no limit

	queued atomic.Int64 // callers waiting for a place in flight

	mu      sync.Mutex
	refused map[string]int // by reason, since the last summary
	total   map[string]int // by reason, since the start
	logAt   time.Time
	// The in-flight schedule: slotAt is the last slot given to a refused
	// caller; rate is the enrolment rate, counted in done since windowAt
	// and measured only over windows in which callers were refused (the
	// server was saturated); in other windows it is raised, so a slow
	// start cannot talk the schedule into ever longer waits.
	slotAt    time.Time
	rate      float64
	done      int
	saturated bool
	windowAt  time.Time
}

// Rates for the in-flight schedule before anything is measured, and at
// the least: guessing high only means some callers are refused again and
// scheduled later; guessing low would idle the server.
const (
	initialEnrollRate = 500.0
	minEnrollRate     = 20.0
)

func newAdmission(l EnrollLimits, now func() time.Time) *admission {
	a := &admission{lim: l, now: now, refused: map[string]int{}, total: map[string]int{}}
	if l.MaxInFlight > 0 {
		a.inflight = make(chan struct{}, l.MaxInFlight)
	}
	if l.PerSourceRate > 0 {
		a.source = newBuckets(l.PerSourceRate, l.PerSourceBurst)
	}
	if l.PerMachineRate > 0 {
		a.machine = newBuckets(l.PerMachineRate, l.PerMachineBurst)
	}
	return a
}

// admitEnroll lets an enrolment in or refuses it at once. The caller must
// call release when admitted.
func (s *AgentService) admitEnroll(ctx context.Context, machineID string) (release func(), err error) {
	a := s.admission
	now := a.now()
	if ok, wait := a.source.take(sourceKey(ctx), now); !ok {
		return nil, s.refuseEnroll(ctx, "per_source", wait,
			"too many enrolments from this address: retry after the delay given")
	}
	if len(machineID) > maxKeyLen {
		machineID = machineID[:maxKeyLen]
	}
	if ok, wait := a.machine.take(machineID, now); !ok {
		return nil, s.refuseEnroll(ctx, "per_machine", wait,
			"this machine enrolled too often just now: retry after the delay given")
	}
	if a.inflight == nil {
		return func() {}, nil
	}
	release = func() {
		<-a.inflight
		a.mu.Lock()
		a.done++
		a.mu.Unlock()
	}
	select {
	case a.inflight <- struct{}{}:
		return release, nil
	default:
	}
	if a.queued.Add(1) <= int64(a.lim.MaxQueued) && a.lim.QueueWait > 0 {
		t := time.NewTimer(a.lim.QueueWait)
		defer t.Stop()
		select {
		case a.inflight <- struct{}{}:
			a.queued.Add(-1)
			return release, nil
		case <-t.C:
		case <-ctx.Done():
			a.queued.Add(-1)
			return nil, ctx.Err()
		}
	}
	a.queued.Add(-1)
	return nil, s.refuseEnroll(ctx, "in_flight", a.nextSlot(a.now()),
		"the server is enrolling as many terminals as it takes at once: retry after the delay given")
}

// nextSlot gives a caller refused by the in-flight cap the next slot at
// the measured enrolment rate and returns how far away it is.
func (a *admission) nextSlot(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.windowAt.IsZero() {
		a.windowAt, a.rate = now, initialEnrollRate
	}
	if el := now.Sub(a.windowAt); el >= time.Second {
		if a.saturated {
			a.rate = max(minEnrollRate, 0.5*a.rate+0.5*float64(a.done)/el.Seconds())
		} else {
			a.rate = min(initialEnrollRate, a.rate*1.5)
		}
		a.done, a.windowAt, a.saturated = 0, now, false
	}
	a.saturated = true
	if a.slotAt.Before(now) {
		a.slotAt = now
	}
	a.slotAt = a.slotAt.Add(time.Duration(float64(time.Second) / a.rate))
	return a.slotAt.Sub(now)
}

// refuseEnroll answers ResourceExhausted with a retry hint and logs a
// summary of refusals at most every 10 s (a storm refuses thousands).
func (s *AgentService) refuseEnroll(ctx context.Context, reason string, wait time.Duration, msg string) error {
	a := s.admission
	wait = max(wait, a.lim.RetryAfter)
	a.mu.Lock()
	a.refused[reason]++
	a.total[reason]++
	var summary, total map[string]int
	if now := time.Now(); now.Sub(a.logAt) >= 10*time.Second {
		summary, a.refused, a.logAt = a.refused, map[string]int{}, now
		total = maps.Clone(a.total)
	}
	a.mu.Unlock()
	if summary != nil {
		s.log.WarnContext(ctx, "enrolment admission: calls refused (agents retry after the hint); "+
			"see docs/runbooks.md if this lasts", "refused", summary, "refused_since_start", total,
			"max_in_flight", a.lim.MaxInFlight, "per_source_rate", a.lim.PerSourceRate, "per_machine_rate", a.lim.PerMachineRate)
	}
	return retryinfo.Error(codes.ResourceExhausted, wait.Round(time.Millisecond), msg)
}

// sourceKey is the caller's address: IPv4 whole, IPv6 by /64 (one host
// usually holds a whole /64).
func sourceKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		host = p.Addr.String()
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		pfx, _ := ip.Prefix(64)
		return pfx.String()
	}
	return ip.String()
}

// buckets is a table of token buckets, one per key.
type buckets struct {
	rate, burst float64
	mu          sync.Mutex
	m           map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	// slotAt is the last retry slot given to a caller this bucket
	// refused: refused callers are told to come back one token apart.
	slotAt time.Time
}

func newBuckets(rate float64, burst int) *buckets {
	return &buckets{rate: rate, burst: float64(burst), m: map[string]*bucket{}}
}

// take spends one token of key's bucket, or refuses and gives the caller
// the next retry slot: when the next token not yet promised to an earlier
// refused caller will be there. A nil table allows everything.
func (b *buckets) take(key string, now time.Time) (bool, time.Duration) {
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.m[key]
	if !ok {
		if len(b.m) >= maxBuckets {
			b.sweep(now)
		}
		if len(b.m) >= maxBuckets {
			return false, time.Duration(float64(time.Second) / b.rate)
		}
		k = &bucket{tokens: b.burst, at: now}
		b.m[key] = k
	}
	if el := now.Sub(k.at); el > 0 {
		k.tokens = min(b.burst, k.tokens+el.Seconds()*b.rate)
	}
	k.at = now // a clock that went back restarts the refill from now
	if k.tokens >= 1 {
		k.tokens--
		return true, 0
	}
	first := now.Add(time.Duration((1 - k.tokens) / b.rate * float64(time.Second)))
	if k.slotAt.Before(first) {
		k.slotAt = first
	} else {
		k.slotAt = k.slotAt.Add(time.Duration(float64(time.Second) / b.rate))
	}
	return false, k.slotAt.Sub(now)
}

// sweep drops buckets that have refilled: they are the same as absent.
func (b *buckets) sweep(now time.Time) {
	for key, k := range b.m {
		if k.tokens+now.Sub(k.at).Seconds()*b.rate >= b.burst && !k.slotAt.After(now) {
			delete(b.m, key)
		}
	}
}
