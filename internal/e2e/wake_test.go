package e2e

import (
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestAgentWakesWhenServerReturns: an agent whose report failed while the
// server was down waits out its back-off (a minute here) — unless its
// connection becomes ready again first: then it reports within gRPC's
// capped reconnect back-off (agent/transport: 5 s) of the server's return.
// This is what keeps a restart of a server with 10,000 terminals short
// (docs/performance.md, reconnect storm).
func TestAgentWakesWhenServerReturns(t *testing.T) {
	testenv.Short(t)
	data, addr := t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	clock := h.Clock
	dir := enrolAgent(t, h, t.TempDir(), "pc-wake")
	h.Stop()

	a := startAgentWith(t, dir, clock.Now, "pc-wake", func(cfg *daemon.Config, _ daemon.Spool) {
		cfg.Sleep = nil // the real sleep: a minute's back-off is a minute
		cfg.BackoffBase, cfg.MaxBackoff = time.Minute, 2*time.Minute
		cfg.Rand = func() float64 { return 0.999 }
	})
	failed := a.waitRound(t, "a failed round while the server is down", func(r daemon.RoundResult) bool { return r.Err != nil })
	if failed.Next < 50*time.Second {
		t.Fatalf("back-off %v; the test needs a long one", failed.Next)
	}

	back := time.Now()
	servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	a.waitRound(t, "a report after the server is back", func(r daemon.RoundResult) bool { return r.Err == nil })
	if took := time.Since(back); took > 15*time.Second {
		t.Fatalf("reported %v after the server was back; want within gRPC's reconnect back-off, not the agent's %v", took, failed.Next)
	}
}
