package main

import (
	"runtime/debug"
	"sync"
)

// The agent's Go runtime settings. The agent is idle almost all the time:
// it wakes on its report timer (a minute by default), on a uevent, on a
// login through the local socket. What it must not do is hold memory it
// used once or wake for the runtime's own housekeeping more than needed
// (issue #20: idle RSS under 15 MiB; docs/performance.md "The idle agent").
//
//   - GOGC 50 (default 100): the live heap of an idle agent is about 1 MiB
//     and a report round allocates a few hundred KiB, so the heap goal
//     drops from the runtime's 4 MiB floor to 2 MiB at the price of a
//     collection every round or two — which runs in the round's own wake-up
//     instead of in the runtime's forced collection two minutes later.
//   - GOMEMLIMIT 32 MiB, soft: nothing the agent normally does comes near
//     it; it makes the collector work harder before a burst (a spool
//     backlog replayed in 4 MiB reports, a large policy) grows the heap
//     much past it. It is not a hard cap: a live heap above it is
//     collected more often (the runtime spends at most half a CPU on
//     that), never refused.
//
// Either is left alone when the operator set GOGC or GOMEMLIMIT in the
// service's environment (the unit file or the service's registry key).
const (
	agentGCPercent   = 50
	agentMemoryLimit = 32 << 20
)

// tuneRuntime applies the settings above unless the environment sets them.
func tuneRuntime(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(agentMemoryLimit)
	}
}

// settleOnce gives start-up's heap back once.
var settleOnce sync.Once

// afterRound runs after every report round. The first time, it gives
// back the heap's free pages: enrolment, the first TLS handshake, the
// policy and the first full report are the agent's largest allocations,
// and the runtime's scavenger would return them only over minutes. Every
// time, on Linux, it unmaps the program's own read-only pages the round
// touched (releaseCode).
func afterRound() {
	settleOnce.Do(debug.FreeOSMemory)
	releaseCode()
}
