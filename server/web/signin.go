package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/server/auth"
)

// Sign-in costs an attacker more than the server (issue 14 item 5).
//
// An attempt passes, in this order, each step cheaper than the next:
//  1. the anti-forgery pair, which only this server can make (a MAC over
//     a nonce and an expiry under a key of this process);
//  2. a per-address token bucket (the TCP peer's address: a proxy in
//     front makes every user one address, see docs/console.md);
//  3. a per-login token bucket, for unknown logins too;
//  4. a slot for the password hash: argon2id takes 19 MiB, so at most
//     Config.HashMemory / 19 MiB hashes run at once, each slot collecting
//     its check's work area before the next (auth.HashSlot); a request
//     that does not get one within Config.HashWait is answered 503 at once.
//
// Refusals carry Retry-After. Failures for logins that do not exist are
// audited as one row per burst with counts (failAgg), not one per try.

// passwordHashBytes is the memory one argon2id check takes (auth's
// parameters: 19 MiB).
const passwordHashBytes = 19 << 20

// maxRetryAfter caps every Retry-After the console sends.
const maxRetryAfter = 5 * time.Minute

// hashSlots is how many password hashes fit in memory bytes (at least
// 1). x/crypto's argon2 allocates a new 19 MiB work area per check, and
// Go's collector (GOGC=100) let that garbage reach twice the live heap —
// measured under TestSignInFlood's flood: +100 MiB with two such checks
// at a time, +62 MiB with one — so each slot collects it after its check
// (auth.HashSlot); the figure with that is in docs/console.md.
func hashSlots(memory int64) int {
	return int(max(1, memory/passwordHashBytes))
}

type signinGuard struct {
	key   [32]byte // MACs the sign-in form's anti-forgery pairs
	slots chan *auth.HashSlot
	wait  time.Duration
	addr  *limiter
	login *limiter
	fails *failAgg
}

func newSigninGuard(cfg Config, c *Console) *signinGuard {
	g := &signinGuard{
		slots: make(chan *auth.HashSlot, hashSlots(cfg.HashMemory)),
		wait:  cfg.HashWait,
		addr:  newLimiter(cfg.AddrBurst, cfg.AddrEvery, maxLimiterKeys),
		login: newLimiter(cfg.LoginBurst, cfg.LoginEvery, maxLimiterKeys),
		fails: &failAgg{window: cfg.FailBurst, write: c.audit},
	}
	for range cap(g.slots) {
		g.slots <- new(auth.HashSlot)
	}
	if _, err := rand.Read(g.key[:]); err != nil {
		panic(err)
	}
	return g
}

// Anti-forgery pair of the sign-in form: cookie and form field carry the
// same value, base64url(nonce ‖ expiry ‖ MAC). A client cannot choose
// one: the MAC needs the key.
const preTokenTTL = time.Hour

func (g *signinGuard) newPreToken(now time.Time) string {
	var b [16 + 8 + 32]byte
	if _, err := rand.Read(b[:16]); err != nil {
		panic(err)
	}
	binary.BigEndian.PutUint64(b[16:24], uint64(now.Add(preTokenTTL).Unix()))
	m := hmac.New(sha256.New, g.key[:])
	m.Write([]byte("mamori console sign-in v1\x00"))
	m.Write(b[:24])
	copy(b[24:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkPreToken: the cookie and the form agree and the server made them
// less than an hour ago.
func (g *signinGuard) checkPreToken(cookie, form string, now time.Time) bool {
	if !auth.CheckCSRFPair(cookie, form) || len(cookie) > 128 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(cookie)
	if err != nil || len(b) != 16+8+32 {
		return false
	}
	m := hmac.New(sha256.New, g.key[:])
	m.Write([]byte("mamori console sign-in v1\x00"))
	m.Write(b[:24])
	if !hmac.Equal(m.Sum(nil), b[24:]) {
		return false
	}
	exp := int64(binary.BigEndian.Uint64(b[16:24]))
	return exp >= 0 && now.Unix() <= exp
}

// acquire waits at most g.wait for a hash slot; give it back with the
// returned function.
func (g *signinGuard) acquire(ctx context.Context) (*auth.HashSlot, func(), bool) {
	select {
	case s := <-g.slots:
		return s, func() { g.slots <- s }, true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case s := <-g.slots:
		return s, func() { g.slots <- s }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, nil, false
}

// peerAddr is the request's TCP peer (the IP only).
func peerAddr(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// retryAfter sets Retry-After to d rounded up to seconds, 1 s to 5 min.
func retryAfter(w http.ResponseWriter, d time.Duration) {
	d = min(max(d, time.Second), maxRetryAfter)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
}

// maxLimiterKeys bounds each limiter's memory: 10,000 buckets of about
// 100 bytes.
const maxLimiterKeys = 10000

// limiter is a token bucket per key: burst attempts at once, then one
// every every.
type limiter struct {
	mu    sync.Mutex
	burst float64
	every time.Duration
	max   int
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(burst int, every time.Duration, maxKeys int) *limiter {
	return &limiter{burst: float64(burst), every: every, max: maxKeys, m: map[string]*bucket{}}
}

// take spends one attempt for key at now; when there is none, it says
// how long until there is. A full table first forgets keys whose buckets
// have refilled; if none has, a new key is refused (memory stays bounded;
// the attacker who fills it blocks new addresses, not the ones already
// known, and only until buckets refill).
func (l *limiter) take(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= l.max {
			for k, o := range l.m {
				if l.level(o, now) >= l.burst {
					delete(l.m, k)
				}
			}
			if len(l.m) >= l.max {
				return l.every, false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[key] = b
	}
	b.tokens, b.at = l.level(b, now), now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(l.every)), false
	}
	b.tokens--
	return 0, true
}

func (l *limiter) level(b *bucket, now time.Time) float64 {
	dt := now.Sub(b.at)
	if dt < 0 {
		dt = 0
	}
	return min(l.burst, b.tokens+float64(dt)/float64(l.every))
}

// failAgg counts the sign-in failures that name no operator, and the
// attempts refused before any lookup (throttled, busy), and writes one
// audit row per burst: the first failure opens a burst of window; the
// row is written by the first failure after it, by a timer, or at Close.
type failAgg struct {
	window time.Duration
	write  func(ctx context.Context, actor, action, target, detail string) error

	mu      sync.Mutex
	start   time.Time
	last    time.Time
	n       int
	reasons map[string]int
	logins  []string // up to maxSamples, as typed (made one line, truncated)
	nLogins map[string]struct{}
	addrs   map[string]struct{}
	timer   *time.Timer
}

const (
	maxSamples  = 5
	maxDistinct = 1000
)

// note counts one failure at now; a burst that is over is written first.
func (f *failAgg) note(ctx context.Context, now time.Time, reason, login, addr string) {
	f.mu.Lock()
	var done string
	if f.n > 0 && now.Sub(f.start) >= f.window {
		done = f.detailLocked()
		f.resetLocked()
	}
	if f.n == 0 {
		f.start = now
		f.reasons, f.nLogins, f.addrs, f.logins = map[string]int{}, map[string]struct{}{}, map[string]struct{}{}, nil
		if f.timer == nil {
			// Real time: with a quiet attacker the row still lands.
			f.timer = time.AfterFunc(f.window, func() { f.Flush(context.Background()) })
		}
	}
	f.n++
	f.last = now
	f.reasons[reason]++
	if login != "" {
		if _, ok := f.nLogins[login]; !ok && len(f.nLogins) < maxDistinct {
			f.nLogins[login] = struct{}{}
			if len(f.logins) < maxSamples {
				f.logins = append(f.logins, sample(login))
			}
		}
	}
	if len(f.addrs) < maxDistinct {
		f.addrs[addr] = struct{}{}
	}
	f.mu.Unlock()
	if done != "" {
		_ = f.write(ctx, "console", "console.login.fail", "(unknown logins)", done)
	}
}

// Flush writes the burst in progress, if any.
func (f *failAgg) Flush(ctx context.Context) {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	d := f.detailLocked()
	f.resetLocked()
	f.mu.Unlock()
	_ = f.write(ctx, "console", "console.login.fail", "(unknown logins)", d)
}

func (f *failAgg) resetLocked() {
	f.n = 0
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
}

func (f *failAgg) detailLocked() string {
	var rs []string
	for r, n := range f.reasons {
		rs = append(rs, fmt.Sprintf("%s=%d", r, n))
	}
	slices.Sort(rs)
	more := ""
	if len(f.nLogins) >= maxDistinct || len(f.addrs) >= maxDistinct {
		more = " (distinct counts capped at 1000)"
	}
	return fmt.Sprintf("count=%d %s from=%s to=%s logins=%d addresses=%d%s e.g. %s",
		f.n, strings.Join(rs, " "), f.start.UTC().Format(time.RFC3339), f.last.UTC().Format(time.RFC3339),
		len(f.nLogins), len(f.addrs), more, strings.Join(f.logins, " "))
}

// sample is an attacker-typed login as it may appear in a record: one
// line, at most 32 characters, quoted.
func sample(login string) string {
	s := textsafe.OneLine(login)
	if r := []rune(s); len(r) > 32 {
		s = string(r[:32]) + "…"
	}
	return strconv.Quote(s)
}
