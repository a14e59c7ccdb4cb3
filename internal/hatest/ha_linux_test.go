package hatest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
	"github.com/mamori-dev/mamori/server/store/postgres"
)

const haKind = "ha_test"

// agent is the agent core (agent/daemon with a real spool) in this process.
type agent struct {
	host   string
	id     string
	spool  *spool.Spool
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	rounds []round
	ids    []string // events appended to the spool
}

type round struct {
	at     time.Time
	server string
	err    error
}

func testFacts(host string) func(context.Context) (*mamoriv1.DeviceFacts, error) {
	return func(context.Context) (*mamoriv1.DeviceFacts, error) {
		return servertest.Facts(host, "hatest-machine-"+host), nil
	}
}

// startAgent enrols a terminal with the agent's own enrolment code (pinned
// to the CA fingerprint) through servers, then runs the agent core with
// servers in that order. now is the terminal's clock (nil: time.Now).
func startAgent(t *testing.T, host string, servers []string, token, fingerprint string, now func() time.Time) *agent {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := testFacts(host)(context.Background())
	r, err := enroll.Enroll(context.Background(), slog.New(slog.DiscardHandler), dir, enroll.Params{
		Servers: servers, Token: config.Secret(token), CAFingerprint: fingerprint, Facts: f, Now: now,
	})
	if err != nil {
		t.Fatalf("enrol %s: %v", host, err)
	}
	sp, err := spool.Open(filepath.Join(dir.Path(), "spool"), spool.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{host: host, id: r.Identity.Device.DeviceID, spool: sp, done: make(chan struct{})}
	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool, cfg.Facts, cfg.Now, cfg.Servers = dir, sp, testFacts(host), now, servers
	cfg.MaxBatchEvents = 20 // many small reports: a kill lands mid-send
	cfg.CallTimeout = 5 * time.Second
	cfg.BackoffBase, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	// Rounds follow each other after a short pause instead of the policy's
	// interval.
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d, 30*time.Millisecond)):
			return nil
		}
	}
	cfg.OnRound = func(r daemon.RoundResult) {
		a.mu.Lock()
		a.rounds = append(a.rounds, round{at: time.Now(), server: r.Server, err: r.Err})
		a.mu.Unlock()
	}
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { defer close(a.done); d.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
	a.spool.Close()
}

// record appends one test event to the spool, as a control does.
func (a *agent) record(t *testing.T, at time.Time, attrs map[string]string) string {
	t.Helper()
	id := daemon.NewEventID()
	if err := a.spool.Append(context.Background(), &mamoriv1.Event{
		Id: id, Time: timestamppb.New(at), Control: "media", Kind: haKind, Attributes: attrs,
	}); err != nil {
		t.Fatalf("append: %v", err)
	}
	a.mu.Lock()
	a.ids = append(a.ids, id)
	a.mu.Unlock()
	return id
}

// okRounds returns the servers of the successful rounds after since.
func (a *agent) okRounds(since time.Time) map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[string]int{}
	for _, r := range a.rounds {
		if r.err == nil && r.at.After(since) {
			m[r.server]++
		}
	}
	return m
}

// storedEvents lists a device's test events in the store, oldest first,
// and fails on an event stored twice.
func storedEvents(t *testing.T, st store.Events, deviceID string) []store.StoredEvent {
	t.Helper()
	seen := map[string]bool{}
	var out []store.StoredEvent
	var before int64
	for range 10000 {
		evs, err := st.ListEvents(context.Background(), store.EventFilter{DeviceID: deviceID, BeforeSeq: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Event.GetKind() != haKind {
				continue
			}
			if seen[e.Event.Id] {
				t.Fatalf("event %s of %s stored twice", e.Event.Id, deviceID)
			}
			seen[e.Event.Id] = true
			out = append(out, e)
		}
		if len(evs) < 1000 {
			break
		}
		before = evs[len(evs)-1].Seq
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// checkExactlyOnce fails unless the store holds every event a recorded,
// once, and no other test event of that device.
func checkExactlyOnce(t *testing.T, st store.Events, a *agent) {
	t.Helper()
	stored := map[string]bool{}
	for _, e := range storedEvents(t, st, a.id) {
		stored[e.Event.Id] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range a.ids {
		if !stored[id] {
			t.Errorf("%s: event %s missing from the store", a.host, id)
		}
		delete(stored, id)
	}
	if len(stored) > 0 {
		t.Errorf("%s: %d events stored that the agent never recorded", a.host, len(stored))
	}
}

// Two mamori-server processes share one PostgreSQL and one CA; agents know
// both addresses. One server is SIGKILLed while the agents send: the agents
// that used it move to the other, and every event is stored exactly once.
func TestTwoServersOnePostgresFailover(t *testing.T) {
	testenv.Short(t)
	dsn := pgtest.DSN(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	srvA := startServer(t, dataA, dsn, freeAddr(t))
	shareCA(t, dataA, dataB) // production: the same CA files on every server
	srvB := startServer(t, dataB, dsn, freeAddr(t))
	pool, fp := caPool(t, dataB)
	if _, fpA := caPool(t, dataA); fpA != fp {
		t.Fatal("the two servers have different CAs")
	}

	// The admin operator created by A works on B: operators, tokens and
	// devices live in the shared database only.
	h := adminClient(t, srvB.adminAddr, pool, srvA.adminToken(t))
	tok, err := h.CreateEnrollmentToken(context.Background(), &mamoriv1.CreateEnrollmentTokenRequest{Uses: 6})
	if err != nil {
		t.Fatalf("token from server B with A's admin: %v", err)
	}

	var agents []*agent
	for i := range 6 {
		servers := []string{srvA.addr, srvB.addr}
		if i%2 == 1 {
			servers = []string{srvB.addr, srvA.addr}
		}
		agents = append(agents, startAgent(t, fmt.Sprintf("pc-ha-%02d", i), servers, tok.Token, fp, nil))
	}
	// Each agent records 150 events, one every 10 ms, while reporting.
	const perAgent = 150
	var wg sync.WaitGroup
	var recorded atomic.Int64
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perAgent {
				a.record(t, time.Now(), map[string]string{"n": strconv.Itoa(i)})
				recorded.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Kill A once every agent has reported at least once and a third of
	// the events are recorded.
	waitFor(t, 30*time.Second, "first reports", func() bool {
		for _, a := range agents {
			if len(a.okRounds(time.Time{})) == 0 {
				return false
			}
		}
		return recorded.Load() >= 6*perAgent/3
	})
	for i, a := range agents {
		if want := map[bool]string{true: srvA.addr, false: srvB.addr}[i%2 == 0]; a.okRounds(time.Time{})[want] == 0 {
			t.Fatalf("%s did not start on its first server %s: %v", a.host, want, a.okRounds(time.Time{}))
		}
	}
	srvA.kill()
	killed := time.Now()
	t.Logf("server A SIGKILLed with %d of %d events recorded", recorded.Load(), 6*perAgent)
	wg.Wait()
	waitFor(t, 60*time.Second, "every spool empty", func() bool {
		for _, a := range agents {
			if a.spool.Len() > 0 {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		a.stop()
		// A round whose answer came from A just before the kill may be
		// recorded just after it; every later one must be B's.
		got := a.okRounds(killed)
		if got[srvA.addr] > 1 || got[srvB.addr] == 0 {
			t.Errorf("%s after the kill: successful rounds per server %v, want them on B", a.host, got)
		}
		checkExactlyOnce(t, st, a)
	}
}
