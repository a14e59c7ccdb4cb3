package api

import (
	"sync"

	"github.com/mamori-dev/mamori/server/ingest"
)

// knownState is what this server knows a device holds after a report it
// stored: the agent's state digest, the digest of the effective policy its
// verdict was evaluated under, and the certificate it came with. A
// no-change report matching all three is answered without a transaction
// (AgentService.reportSteady).
type knownState struct {
	digest, verdictPolicy, serial string
}

// maxKnownStates bounds the map (about 250 bytes an entry): past it, the
// map is emptied and refills from the next full or differential report
// of each device; a device not in it only takes the slow path once.
const maxKnownStates = 1 << 20

// knownStates is per server. With several servers on one database an
// entry can be out of date (another server stored a newer state); the
// batched last_seen write checks the stored digest and sends such a
// device back to the slow path (Heartbeats.OnStale), so a stale entry
// costs at most one flush interval.
type knownStates struct {
	mu sync.Mutex
	m  map[string]knownState
}

func (k *knownStates) get(id string) (knownState, bool) {
	k.mu.Lock()
	st, ok := k.m[id]
	k.mu.Unlock()
	return st, ok
}

func (k *knownStates) set(id string, st knownState) {
	k.mu.Lock()
	if k.m == nil || len(k.m) >= maxKnownStates {
		k.m = make(map[string]knownState)
	}
	k.m[id] = st
	k.mu.Unlock()
}

func (k *knownStates) forget(ids ...string) {
	k.mu.Lock()
	for _, id := range ids {
		delete(k.m, id)
	}
	k.mu.Unlock()
}

// Close writes the pending last_seen of no-change reports and stops their
// flusher. The gRPC server must be stopped first.
func (s *Server) Close() {
	if s.agent.heartbeats != nil {
		s.agent.heartbeats.Close()
	}
}

// FlushHeartbeats writes the pending last_seen of no-change reports now
// (tests; Close does it too).
func (s *Server) FlushHeartbeats() {
	if s.agent.heartbeats != nil {
		s.agent.heartbeats.Flush()
	}
}

func newHeartbeats(d Deps, states *knownStates) (*ingest.Heartbeats, error) {
	if d.Heartbeat.FlushEvery < 0 {
		return nil, nil // off: every differential report takes the slow path
	}
	cfg := ingest.DefaultHeartbeatConfig()
	if d.Heartbeat.FlushEvery > 0 {
		cfg.FlushEvery = d.Heartbeat.FlushEvery
	}
	if d.Heartbeat.MaxPending > 0 {
		cfg.MaxPending = d.Heartbeat.MaxPending
	}
	cfg.Log = d.Log
	cfg.OnStale = func(ids []string) { states.forget(ids...) }
	return ingest.NewHeartbeats(d.Store, cfg)
}
