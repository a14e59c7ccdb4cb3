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
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/retryinfo"
	"github.com/mamori-dev/mamori/server/store"
)

// EnrollLimits bound what enrolment may cost the server. An enrolment is
// the expensive call an unauthenticated caller can make (a token lookup,
// a signature and a commit behind the database's writer), so it is
// admitted in steps, each refused at once, never queued. Every budget is
// keyed by something the server knows, never by what the caller claims,
// and spent in an order where no caller spends another's:
//
//  1. a token bucket per source address (IPv6 by /64), and that address's
//     failed-token budget: one host cannot take the whole enrolment
//     capacity, and a host that guessed tokens is refused before it
//     costs a lookup. Only calls from that address spend them;
//  2. a cap on enrolments being worked on at once (admission control),
//     with a short, bounded wait for a free place: at most MaxQueued
//     callers wait, each at most QueueWait (far inside the agent's 30 s
//     call timeout); past that the call is answered ResourceExhausted
//     with a retry hint (google.rpc.RetryInfo) at once. Everything that
//     touches the database runs under it;
//  3. the token is checked (in the enrolment's own transaction; the
//     first call of an attested enrolment, which writes nothing, reads it
//     with CheckToken). An unknown or expired token spends one of the
//     source's failed-token budget, is logged at WARN with the address
//     and stored (incident rule enroll-token-guessing);
//  4. a token bucket per valid token (its hash): a leaked token in a loop
//     is slowed. Only holders of that token spend it.
//
// The machine ID a caller sends is no key: a budget keyed by it let
// anyone block a victim's enrolment by naming its machine ID. Renew has a
// budget of its own per device, keyed by the verified certificate.
//
// A refusal is ResourceExhausted with a RetryInfo hint, and the hints are
// a schedule, not a constant: each refused caller is given the next free
// slot at the rate the server can take them (the bucket's rate, or the
// measured enrolment rate for the in-flight cap), so a crowd that was
// refused at once comes back spread out instead of all together. A hint
// is never longer than MaxRetryHint: past it the schedule stops growing
// (agents cap what they accept at the same figure). A zero rate or cap
// switches that step off.
type EnrollLimits struct {
	PerSourceRate  float64 // enrolments a second per source address
	PerSourceBurst int
	// FailedTokenRate and FailedTokenBurst: enrolments refused for their
	// token one address may make (a second, and at once) before that
	// address is refused without a lookup.
	FailedTokenRate  float64
	FailedTokenBurst int
	PerTokenRate     float64 // enrolments a second per valid token
	PerTokenBurst    int
	RenewRate        float64 // renewals a second per device
	RenewBurst       int
	MaxInFlight      int // enrolments being worked on at once
	// MaxQueued callers may wait up to QueueWait for a place in flight.
	MaxQueued int
	QueueWait time.Duration
	// RetryAfter is the least wait a refusal asks for.
	RetryAfter time.Duration
}

// MaxRetryHint caps every retry hint enrolment and renewal give.
const MaxRetryHint = retryinfo.MaxDelay

// DefaultEnrollLimits suit one server enrolling a whole municipality at
// once. The numbers, and why:
//
//   - per source 500/s, burst 2,000: a rollout may come from one address
//     (a NAT, a proxy, the load tool on loopback), so this must not be
//     what slows it: it is above one server's enrolment rate (~250–400/s
//     on SQLite here), and the in-flight cap below is what protects the
//     server. Measured with 2,000 terminals at once from one address:
//     6.7 s with no per-source limit, 12.1 s with 300/s, burst 1,000 —
//     each refused caller pays a second TLS handshake.
//   - failed tokens 20 at once, then one a minute per address: an
//     installer with a mistyped token retries a few times; a guesser gets
//     ~1,440 guesses a day per address against a 2^128 token space, and
//     10 within 10 minutes open an incident.
//   - per token 500/s, burst 2,000: a rollout usually runs on one token,
//     so, like the per-source limit, this must not be what slows it (at
//     50/s a 2,000-terminal storm here took 12 % longer, and 10,000 would
//     take minutes). It keeps one token to about one server's enrolment
//     rate; its use count is what bounds a leaked token.
//   - renew 1 per 5 s, burst 6 per device: a device renews once in 16
//     months; one renewing in a loop would fill the audit log.
//   - 64 in flight: SQLite commits one enrolment at a time (~5 ms each),
//     so 64 waiting is ~0.3 s of queue, far inside the agent's 30 s call
//     timeout; PostgreSQL runs several at once and needs no more.
//   - 1,024 more may wait up to 10 s for a place: at ~200 enrolments/s
//     they are through in ~5 s, and a caller that waited did not pay a
//     second TLS handshake. Each waiting caller holds a connection and a
//     goroutine (~50 KiB).
//   - retry after at least 1 s, at most MaxRetryHint (5 min).
func DefaultEnrollLimits() EnrollLimits {
	return EnrollLimits{
		PerSourceRate: 500, PerSourceBurst: 2000,
		FailedTokenRate: 1.0 / 60, FailedTokenBurst: 20,
		PerTokenRate: 500, PerTokenBurst: 2000,
		RenewRate: 0.2, RenewBurst: 6,
		MaxInFlight: 64, MaxQueued: 1024, QueueWait: 10 * time.Second,
		RetryAfter: time.Second,
	}
}

// Validate checks the limits.
func (l EnrollLimits) Validate() error {
	var errs []error
	for _, r := range []struct {
		name  string
		rate  float64
		burst int
	}{
		{"--enroll-per-source-rate", l.PerSourceRate, l.PerSourceBurst},
		{"--enroll-failed-token-rate", l.FailedTokenRate, l.FailedTokenBurst},
		{"--enroll-per-token-rate", l.PerTokenRate, l.PerTokenBurst},
		{"--renew-rate", l.RenewRate, l.RenewBurst},
	} {
		if r.rate < 0 || r.rate > 0 && r.burst < 1 {
			errs = append(errs, fmt.Errorf("%s must be ≥ 0, with a burst ≥ 1 when set", r.name))
		}
	}
	if l.MaxInFlight < 0 {
		errs = append(errs, errors.New("--enroll-max-in-flight must be ≥ 0 (0: no cap)"))
	}
	if l.MaxQueued < 0 || l.QueueWait < 0 || l.QueueWait > time.Minute {
		errs = append(errs, errors.New("--enroll-max-queued must be ≥ 0 and --enroll-queue-wait between 0 and 1m"))
	}
	if l.RetryAfter < 0 || l.RetryAfter > MaxRetryHint {
		errs = append(errs, fmt.Errorf("--enroll-retry-after must be between 0 and %v", MaxRetryHint))
	}
	return errors.Join(errs...)
}

// maxBuckets bounds each bucket table; past it, full (idle) buckets are
// swept, and if it is still full a new key is refused like an empty
// bucket: memory stays bounded under a flood of addresses or machine IDs.
const maxBuckets = 1 << 16

type admission struct {
	lim      EnrollLimits
	now      func() time.Time
	inflight chan struct{} // nil: no cap
	// nil: no limit. source and failed are keyed by the caller's
	// address, token by the token's hash, renew by the device ID of the
	// verified certificate.
	source, failed, token, renew *buckets

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
	if l.FailedTokenRate > 0 {
		a.failed = newBuckets(l.FailedTokenRate, l.FailedTokenBurst)
	}
	if l.PerTokenRate > 0 {
		a.token = newBuckets(l.PerTokenRate, l.PerTokenBurst)
	}
	if l.RenewRate > 0 {
		a.renew = newBuckets(l.RenewRate, l.RenewBurst)
	}
	return a
}

// admitSource is step 1: the caller's address, and its failed-token
// budget (looked at, not spent: only a failure spends it).
func (s *AgentService) admitSource(ctx context.Context, source string) error {
	a := s.admission
	now := a.now()
	if ok, wait := a.failed.peek(source, now); !ok {
		return s.refuseEnroll(ctx, "failed_tokens", wait,
			"too many enrolments with a wrong token from this address: retry after the delay given")
	}
	if ok, wait := a.source.take(source, now); !ok {
		return s.refuseEnroll(ctx, "per_source", wait,
			"too many enrolments from this address: retry after the delay given")
	}
	return nil
}

// tokenFailed is step 2's refusal: it spends one of the source's
// failed-token budget, logs the address at WARN and stores the failure
// for the incident rule. The caller gets the same answer as for any
// refused token.
func (s *AgentService) tokenFailed(ctx context.Context, source, reason string) error {
	a := s.admission
	a.failed.take(source, a.now())
	s.metrics.enrollTokenFailures.Add(1)
	s.log.WarnContext(ctx, "enrolment token refused", "source", source, "reason", reason)
	if err := s.store.RecordEnrollFailure(ctx, store.EnrollFailure{Source: source, At: s.now(), Reason: reason}); err != nil {
		s.log.ErrorContext(ctx, "enrolment failure not stored", "source", source, "error", err)
	}
	return status.Error(codes.PermissionDenied, "enrolment token refused")
}

// admitToken is step 4, for a token that was found valid: its own budget.
func (s *AgentService) admitToken(ctx context.Context, tokenHash []byte) error {
	a := s.admission
	if ok, wait := a.token.take(string(tokenHash), a.now()); !ok {
		return s.refuseEnroll(ctx, "per_token", wait,
			"this enrolment token was used too often just now: retry after the delay given")
	}
	return nil
}

// admitEnroll is step 2: a place in flight, so the token's lookup and
// everything after it run under the cap. The caller must call release
// when admitted.
func (s *AgentService) admitEnroll(ctx context.Context) (release func(), err error) {
	a := s.admission
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
	wait = min(max(wait, a.lim.RetryAfter), MaxRetryHint)
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
			"max_in_flight", a.lim.MaxInFlight, "per_source_rate", a.lim.PerSourceRate, "per_token_rate", a.lim.PerTokenRate)
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
			return false, min(time.Duration(float64(time.Second)/b.rate), MaxRetryHint)
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
	// The schedule stops at the cap: a crowd refused a thousand times
	// is told MaxRetryHint, not hours.
	if lim := now.Add(MaxRetryHint); k.slotAt.After(lim) {
		k.slotAt = lim
	}
	return false, k.slotAt.Sub(now)
}

// peek reports whether key's bucket has a token, without spending it,
// and if not, how long until it has.
func (b *buckets) peek(key string, now time.Time) (bool, time.Duration) {
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.m[key]
	if !ok {
		return true, 0
	}
	tokens := min(b.burst, k.tokens+max(now.Sub(k.at), 0).Seconds()*b.rate)
	if tokens >= 1 {
		return true, 0
	}
	return false, min(time.Duration((1-tokens)/b.rate*float64(time.Second)), MaxRetryHint)
}

// sweep drops buckets that have refilled: they are the same as absent.
func (b *buckets) sweep(now time.Time) {
	for key, k := range b.m {
		if k.tokens+now.Sub(k.at).Seconds()*b.rate >= b.burst && !k.slotAt.After(now) {
			delete(b.m, key)
		}
	}
}
