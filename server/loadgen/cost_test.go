package loadgen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// costed divides the CPU time of the phase by the calls answered, for the
// server (through Config.Sample) and for this process; a server that was
// restarted in between (another PID) or could not be read gives no figure
// rather than a wrong one.
func TestCostedCPUPerCall(t *testing.T) {
	samples := []Usage{{PID: 7, CPU: time.Second}, {PID: 7, CPU: 3 * time.Second}}
	g := &gen{cfg: Config{Sample: func() (Usage, error) {
		u := samples[0]
		samples = samples[1:]
		return u, nil
	}}}
	var r ReportResult
	g.costed(&r, func() {
		r.OK = 100
		// Burn at least 60 ms of CPU (not of wall time: a busy machine
		// may give this process little of it), the tool's share.
		start, err := SelfUsage()
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if u, err := SelfUsage(); err != nil || u.CPU-start.CPU >= 60*time.Millisecond {
				break
			}
		}
	})
	if r.ServerCPUPerCall != 20*time.Millisecond {
		t.Errorf("server CPU per call %v, want 2s/100 = 20ms", r.ServerCPUPerCall)
	}
	if r.ToolCPUPerCall <= 0 || r.ToolCPUPerCall > 10*time.Millisecond {
		t.Errorf("tool CPU per call %v, want about 60ms/100", r.ToolCPUPerCall)
	}
	line := cpuText(r)
	if !strings.Contains(line, "server 20ms") || !strings.Contains(line, "calls/s") {
		t.Errorf("summary %q", line)
	}

	samples = []Usage{{PID: 7, CPU: time.Second}, {PID: 8, CPU: 3 * time.Second}}
	r = ReportResult{}
	g.costed(&r, func() { r.OK = 100 })
	if r.ServerCPUPerCall != 0 {
		t.Errorf("server restarted during the phase: %v, want no figure", r.ServerCPUPerCall)
	}

	g.cfg.Sample = func() (Usage, error) { return Usage{}, errors.New("no /proc") }
	r = ReportResult{}
	g.costed(&r, func() {})
	if r.ServerCPUPerCall != 0 || r.ToolCPUPerCall != 0 || cpuText(r) != "" {
		t.Errorf("no calls answered: %+v, %q", r, cpuText(r))
	}
}

// After the warm-up the tool waits until the server's CPU has stayed under
// SettleIdleCPU for SettleQuiet; a server that stays busy is waited for
// at most SettleMax, and the summary says so.
func TestSettleAfterWarmup(t *testing.T) {
	// CPU percent of one core in each interval, then idle for ever.
	run := func(busy []float64) *WarmupResult {
		at, cpu, i := time.Unix(0, 0), time.Duration(0), 0
		g := &gen{settleEvery: time.Millisecond, cfg: Config{Sample: func() (Usage, error) {
			u := Usage{PID: 1, At: at, CPU: cpu}
			pct := 1.0
			if i < len(busy) {
				pct = busy[i]
			}
			i++
			at = at.Add(time.Second)
			cpu += time.Duration(pct / 100 * float64(time.Second))
			return u, nil
		}}}
		out := &WarmupResult{}
		g.settle(t.Context(), out)
		return out
	}
	// Intervals of a second: 90 and 80 %, 20 s at 5 % (a quiet spell
	// shorter than SettleQuiet), a burst of 60 % (the incident watcher's
	// step), then 1 % for ever: idle from the 24th second, settled
	// SettleQuiet later.
	busy := []float64{90, 80}
	for range 20 {
		busy = append(busy, 5)
	}
	busy = append(busy, 60)
	w := run(busy)
	if w.SettleTimedOut || w.SettleCPU != 1 || w.Settle != 23*time.Second+SettleQuiet {
		t.Errorf("settle %+v", w)
	}
	var sb strings.Builder
	(&Result{Mode: ModeSteady, Warmup: w}).WriteSummary(&sb)
	if !strings.Contains(sb.String(), "settle: the server went idle") {
		t.Errorf("summary:\n%s", sb.String())
	}

	always := make([]float64, 1000)
	for i := range always {
		always[i] = 100
	}
	w = run(always)
	if !w.SettleTimedOut || w.Settle < SettleMax || w.Settle > SettleMax+time.Second {
		t.Errorf("a busy server: %+v, want a time-out after %v", w, SettleMax)
	}
	sb.Reset()
	(&Result{Mode: ModeSteady, Warmup: w}).WriteSummary(&sb)
	if !strings.Contains(sb.String(), "settle: the server was still busy") {
		t.Errorf("summary:\n%s", sb.String())
	}
}
