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

// After the warm-up the tool waits until the server's CPU, on average
// over SettleQuiet, is under SettleIdleCPU: the incident watcher's burst
// over the warm-up's history is waited out, its ordinary short step every
// 30 s is not; a server that stays busy is waited for at most SettleMax,
// and the summary says so.
func TestSettleAfterWarmup(t *testing.T) {
	// CPU percent of one core in each second, then pct(i) for ever.
	run := func(busy []float64, after func(i int) float64) *WarmupResult {
		at, cpu, i := time.Unix(0, 0), time.Duration(0), 0
		g := &gen{settleEvery: time.Millisecond, cfg: Config{Sample: func() (Usage, error) {
			u := Usage{PID: 1, At: at, CPU: cpu}
			pct := after(i)
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
	idle := func(int) float64 { return 1 }
	// 90 and 80 %, 20 s at 5 %, the watcher's sweep: 5 s at 100 %, then
	// 1 %. The 35 s window ending at second 59 is the first under 10 %:
	// 3 s of the sweep (300) and 32 s at 1 % = 9.49 %.
	busy := []float64{90, 80}
	for range 20 {
		busy = append(busy, 5)
	}
	busy = append(busy, 100, 100, 100, 100, 100)
	w := run(busy, idle)
	if w.SettleTimedOut || w.Settle != 59*time.Second || w.SettleCPU >= SettleIdleCPU || w.SettleCPU < 9 {
		t.Errorf("after a sweep: %+v", w)
	}
	var sb strings.Builder
	(&Result{Mode: ModeSteady, Warmup: w}).WriteSummary(&sb)
	if !strings.Contains(sb.String(), "settle: the server went idle") {
		t.Errorf("summary:\n%s", sb.String())
	}

	// Idle but for a 1-second step at 50 % every 30 s: settled after the
	// first full window.
	w = run(nil, func(i int) float64 {
		if i%30 == 29 {
			return 50
		}
		return 1
	})
	if w.SettleTimedOut || w.Settle != SettleQuiet {
		t.Errorf("periodic short steps: %+v", w)
	}

	w = run(nil, func(int) float64 { return 100 })
	if !w.SettleTimedOut || w.Settle < SettleMax || w.Settle > SettleMax+time.Second {
		t.Errorf("a busy server: %+v, want a time-out after %v", w, SettleMax)
	}
	sb.Reset()
	(&Result{Mode: ModeSteady, Warmup: w}).WriteSummary(&sb)
	if !strings.Contains(sb.String(), "settle: the server was still busy") {
		t.Errorf("summary:\n%s", sb.String())
	}
}
