package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/ctl"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// Environment variables of the re-executed agent child process.
const (
	envChild    = "MAMORI_E2E_AGENT_CHILD"
	envState    = "MAMORI_E2E_STATE"
	envServer   = "MAMORI_E2E_SERVER"
	envSeed     = "MAMORI_E2E_SEED"
	testKind    = "e2e_test"
	testControl = "media"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(agentChild())
	}
	os.Exit(m.Run())
}

var ctx = context.Background()

// agent is a mamori-agent core running in this process against h.
type agent struct {
	dir    *state.Dir
	spool  *spool.Spool
	cancel context.CancelFunc
	done   chan error
	rounds chan daemon.RoundResult
}

func testFacts(host string) func(context.Context) (*mamoriv1.DeviceFacts, error) {
	return func(context.Context) (*mamoriv1.DeviceFacts, error) {
		return servertest.Facts(host, "e2e-machine-"+host), nil
	}
}

// enrolAgent enrols a fresh state dir through the agent's own enrolment
// code, pinned to the server's CA fingerprint.
func enrolAgent(t *testing.T, h *servertest.Harness, stateDir, host string) *state.Dir {
	t.Helper()
	dir, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := testFacts(host)(ctx)
	_, err = enroll.Enroll(ctx, slog.New(slog.DiscardHandler), dir, enroll.Params{
		Servers: []string{h.Addr}, Token: config.Secret(h.Token(t, 1, 0)),
		CAFingerprint: h.Srv.Boot.CAFingerprint, Facts: f, Now: h.Clock.Now,
	})
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	return dir
}

// startAgent runs the agent core. Its clock is the server's, so the
// self-check sees no skew; rounds follow one another with a short pause
// instead of the policy's interval.
func startAgent(t *testing.T, dir *state.Dir, now func() time.Time, host string) *agent {
	t.Helper()
	return startAgentWith(t, dir, now, host, nil)
}

// startAgentWith is startAgent with a hook that adds to the daemon's
// config before it starts (the MFA test adds the verifier and its socket).
func startAgentWith(t *testing.T, dir *state.Dir, now func() time.Time, host string, hook func(*daemon.Config, daemon.Spool)) *agent {
	t.Helper()
	sp, err := spool.Open(filepath.Join(dir.Path(), "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{dir: dir, spool: sp, done: make(chan error, 1), rounds: make(chan daemon.RoundResult, 1024)}
	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool, cfg.Facts, cfg.Now = dir, sp, testFacts(host), now
	cfg.BackoffBase, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d, 50*time.Millisecond)):
			return nil
		}
	}
	cfg.OnRound = func(r daemon.RoundResult) {
		select {
		case a.rounds <- r:
		default:
		}
	}
	if hook != nil {
		hook(&cfg, sp)
	}
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	go func() { a.done <- d.Run(c) }()
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

// waitRound waits for a round that satisfies ok.
func (a *agent) waitRound(t *testing.T, what string, ok func(daemon.RoundResult) bool) daemon.RoundResult {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-a.rounds:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// mamorictl runs the helpdesk tool's own code path against h.
func mamorictl(t *testing.T, h *servertest.Harness, lang string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{
		"LANG": lang, "MAMORI_SERVER": h.AdminAddr, "MAMORI_CA_FILE": filepath.Join(h.DataDir, "ca.pem"), "MAMORI_TOKEN": h.AdminToken,
	}
	code := ctl.RunOptions(ctx, args, ctl.Options{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }, Now: h.Clock.Now, Location: time.UTC,
	})
	if code != 0 {
		t.Fatalf("mamorictl %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

type deviceJSON struct {
	ID         string   `json:"id"`
	Compliance string   `json:"compliance"`
	Reasons    []string `json:"reasons"`
	Facts      struct {
		Hostname string `json:"hostname"`
	} `json:"facts"`
}

func devicesJSON(t *testing.T, h *servertest.Harness, args ...string) []deviceJSON {
	t.Helper()
	out := mamorictl(t, h, "C", append([]string{"devices", "-o", "json"}, args...)...)
	var got []deviceJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		var wrapped struct {
			Devices []deviceJSON `json:"devices"`
		}
		if err2 := json.Unmarshal([]byte(out), &wrapped); err2 != nil {
			t.Fatalf("devices -o json is not JSON (%v): %s", err, out)
		}
		got = wrapped.Devices
	}
	return got
}

// The foundation's end-to-end path: enrol with a token, report, the device
// is listed COMPLIANT, then NONCOMPLIANT with reasons when the policy
// requires a control it does not enforce, then OFFLINE after the max report
// age once the agent stops.
func TestEndToEnd(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	dir := enrolAgent(t, h, t.TempDir(), "pc-e2e-01")
	a := startAgent(t, dir, h.Clock.Now, "pc-e2e-01")
	a.waitRound(t, "a stored report", func(r daemon.RoundResult) bool { return r.Err == nil })

	devs := devicesJSON(t, h, "--compliant")
	if len(devs) != 1 || devs[0].Facts.Hostname != "pc-e2e-01" {
		t.Fatalf("compliant devices: %+v", devs)
	}
	show := mamorictl(t, h, "C", "device", "show", "pc-e2e-01")
	for _, want := range []string{"pc-e2e-01", "agent", "ENFORCED"} {
		if !strings.Contains(show, want) {
			t.Errorf("device show lacks %q:\n%s", want, show)
		}
	}
	if ja := mamorictl(t, h, "ja_JP.UTF-8", "fleet"); !strings.Contains(ja, "準拠") {
		t.Errorf("Japanese fleet summary:\n%s", ja)
	}

	// The officer requires the media control, which this agent does not have.
	var pol map[string]any
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "policy", "get", "-o", "json")), &pol); err != nil {
		t.Fatal(err)
	}
	pol["controls"].(map[string]any)["media"] = map[string]any{"mode": "MODE_ENFORCE", "required": true}
	b, _ := json.Marshal(pol)
	pf := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mamorictl(t, h, "C", "policy", "set", pf, "--reason", "require media")
	a.waitRound(t, "policy v2 in force", func(r daemon.RoundResult) bool { return r.Err == nil && r.PolicyVersion == 2 })
	a.waitRound(t, "a report under v2", func(r daemon.RoundResult) bool { return r.Err == nil })
	devs = devicesJSON(t, h, "--noncompliant")
	if len(devs) != 1 || len(devs[0].Reasons) == 0 || !strings.Contains(devs[0].Reasons[0], "media") {
		t.Fatalf("non-compliant devices: %+v", devs)
	}

	// The agent stops; after the max report age the device is OFFLINE.
	a.stop()
	h.Clock.Advance(11 * time.Minute)
	if devs := devicesJSON(t, h, "--offline"); len(devs) != 1 {
		t.Fatalf("offline devices: %+v", devs)
	}
	if devs := devicesJSON(t, h, "--noncompliant"); len(devs) != 0 {
		t.Fatalf("an offline device still counted as failing: %+v", devs)
	}
}

// countTestEvents returns how many e2e test events the server stored for a
// device, and fails on a duplicate ID.
func countTestEvents(t *testing.T, st store.Events, deviceID string) int {
	t.Helper()
	seen := map[string]bool{}
	var before int64
	for {
		evs, err := st.ListEvents(ctx, store.EventFilter{DeviceID: deviceID, BeforeSeq: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Event.Kind != testKind {
				continue
			}
			if seen[e.Event.Id] {
				t.Fatalf("event %s stored twice", e.Event.Id)
			}
			seen[e.Event.Id] = true
		}
		if len(evs) < 1000 {
			return len(seen)
		}
		before = evs[len(evs)-1].Seq
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func seed(t testing.TB, sp *spool.Spool, now func() time.Time, n int) {
	em := daemon.NewEmitter(sp, now)
	for i := range n {
		if err := em.Emit(ctx, testControl, testKind, map[string]string{"n": strconv.Itoa(i)}); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

func deviceID(t *testing.T, dir *state.Dir) string {
	t.Helper()
	id, err := dir.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Device.DeviceID
}

// Server down while the agent records 1,000 events; server up; exactly
// 1,000 stored.
func TestServerDownNothingLost(t *testing.T) {
	testenv.Short(t)
	data, addr := t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	clock := h.Clock
	dir := enrolAgent(t, h, t.TempDir(), "pc-down")
	h.Stop()

	a := startAgent(t, dir, clock.Now, "pc-down")
	seed(t, a.spool, clock.Now, 1000)
	a.waitRound(t, "a failed round while the server is down", func(r daemon.RoundResult) bool { return r.Err != nil })
	if n := a.spool.Len(); n < 1000 {
		t.Fatalf("spool holds %d events while the server is down, want ≥ 1000", n)
	}

	h2 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	id := deviceID(t, dir)
	deadline := time.Now().Add(30 * time.Second)
	for countTestEvents(t, h2.Srv.Store(), id) < 1000 || a.spool.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d stored, %d still spooled", countTestEvents(t, h2.Srv.Store(), id), a.spool.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := countTestEvents(t, h2.Srv.Store(), id); n != 1000 {
		t.Fatalf("stored %d, want exactly 1000", n)
	}
}

// The agent is SIGKILLed in the middle of sending, several times, and
// restarted: still exactly 1,000 events stored, none twice.
func TestAgentKilledMidSendNothingLostOrDoubled(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	stateDir := t.TempDir()
	dir := enrolAgent(t, h, stateDir, "pc-kill")
	id := deviceID(t, dir)

	child := func(seedN int) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=1", envState+"="+stateDir, envServer+"="+h.Addr,
			envSeed+"="+strconv.Itoa(seedN))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	var mu sync.Mutex
	stored := func() int {
		mu.Lock()
		defer mu.Unlock()
		return countTestEvents(t, h.Srv.Store(), id)
	}
	// Seed 1,000 events and start sending, then kill it while it sends:
	// at three points of progress.
	last := 0
	for i, after := range []int{1, 300, 600} {
		cmd, out := child(map[bool]int{true: 1000, false: 0}[i == 0])
		deadline := time.Now().Add(30 * time.Second)
		for stored() < after {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child %d made no progress (stored %d):\n%s", i, stored(), out)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		n := stored()
		t.Logf("killed child %d at %d stored", i, n)
		if n < last {
			t.Fatalf("stored count went down: %d after %d", n, last)
		}
		last = n
	}
	cmd, out := child(0)
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for stored() < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("after the kills: %d stored\n%s", stored(), out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a resend of an unacked batch would land now
	if n := stored(); n != 1000 {
		t.Fatalf("stored %d, want exactly 1000", n)
	}
}

// agentChild is the agent process of TestAgentKilledMidSend: it seeds the
// spool if asked and runs the agent core with small batches, so a kill
// lands in the middle of a send.
func agentChild() int {
	dir, err := state.Open(os.Getenv(envState))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sp, err := spool.Open(filepath.Join(dir.Path(), "spool"), spool.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if n, _ := strconv.Atoi(os.Getenv(envSeed)); n > 0 {
		seed(&childTB{}, sp, time.Now, n)
	}
	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool, cfg.Facts = dir, sp, testFacts("pc-kill")
	cfg.Servers = []string{os.Getenv(envServer)}
	cfg.MaxBatchEvents = 25
	cfg.BackoffBase, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := daemon.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := d.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childTB lets seed run outside a test.
type childTB struct{ testing.TB }

func (*childTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
