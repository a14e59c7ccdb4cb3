package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WriteSummary writes a short human summary of r.
func (r *Result) WriteSummary(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("mode %s, %d terminals, one report every %v each", r.Mode, r.Terminals, r.Interval)
	e := r.Enroll
	p("enrolment: %d enrolled, %d failed%s in %v (done after p50 %v, p99 %v, last %v; %d retries%s)",
		e.Enrolled, e.Failed, codesText(e.Errors), round(e.Took), round(e.P50), round(e.P99), round(e.Max), e.Retries, codesText(e.RetryErrors))
	if w := r.Warmup; w != nil {
		p("warm-up: %d terminals connected and sent a full report, %d failed%s in %v (done after p50 %v, p99 %v; %d retries%s); %.0f bytes per terminal (TLS handshake included)",
			w.Connected, w.Failed, codesText(w.Errors), round(w.Took), round(w.P50), round(w.P99), w.Retries, codesText(w.RetryErrors), w.WireBytes)
		switch {
		case w.SettleTimedOut:
			p("settle: the server was still busy %v after the warm-up (%.0f%% of a core); the timed phase starts anyway", round(w.Settle), w.SettleCPU)
		case w.Settle > 0:
			p("settle: the server went idle %v after the warm-up (%.0f%% of a core)", round(w.Settle), w.SettleCPU)
		}
	}
	if r.Mode != ModeEnroll {
		rp := r.Reports
		p("reports: %d ok, %d failed in %v: %.1f/s achieved of %.1f/s offered%s",
			rp.OK, rp.Failed, round(rp.Took), rp.Achieved, rp.Offered, codesText(rp.Errors))
		p("latency from due time: p50 %v, p99 %v, p99.9 %v, max %v; second half (connections up): p50 %v, p99 %v, p99.9 %v, max %v",
			round(rp.P50), round(rp.P99), round(rp.P999), round(rp.Max), round(rp.WarmP50), round(rp.WarmP99), round(rp.WarmP999), round(rp.WarmMax))
		if len(rp.SlowOver1s) > 0 {
			var ks []int
			for k := range rp.SlowOver1s {
				ks = append(ks, k)
			}
			sort.Ints(ks)
			var parts []string
			for _, k := range ks {
				parts = append(parts, fmt.Sprintf("%ds: %d", k, rp.SlowOver1s[k]))
			}
			p("reports slower than 1 s, by when they were due: %s", strings.Join(parts, ", "))
		}
		p("events: %d sent, %d acknowledged, %d unacknowledged at the end", rp.EventsSent, rp.EventsAcked, rp.EventsUnsent)
		p("wire: %.0f bytes per report (both directions, TLS included); %d need_full answers", rp.WireBytes, r.NeedFull)
		if c := cpuText(rp); c != "" {
			p("CPU per report: %s", c)
		}
		if b := r.Baseline; b != nil {
			p("no-op baseline (health check, same terminals and connections): %d ok, %d failed%s: %.1f/s achieved, p50 %v, p99 %v, %.0f bytes per call; reports/no-op = %.3f",
				b.OK, b.Failed, codesText(b.Errors), b.Achieved, round(b.P50), round(b.P99), b.WireBytes, r.Ratio)
			if c := cpuText(*b); c != "" {
				p("CPU per no-op call: %s", c)
			}
		}
	}
	if s := r.Storm; s != nil {
		p("reconnect storm: server down %v; every terminal reported again %v after it was up (%v after it went down); p50 %v; %d back, %d not back; %d failed attempts (after it was up:%s)",
			round(s.Down), round(s.AllBackAfterUp), round(s.AllBackAfterStop), round(s.P50AfterUp), s.Back, s.GaveUp, s.FailedAttempts, codesText(s.FailedAfterUp))
	}
	if v := r.Verify; v != nil {
		p("stored: %d events of these terminals; %d acknowledged: %d missing, %d stored twice, %d never sent",
			v.Stored, v.Acked, v.Missing, v.Duplicates, v.Unexpected)
	}
	if s := r.Server; s != nil {
		p("server (pid %d): %.0f%% CPU (200%% = both cores), RSS %s at the end, peak %s; load tool %.0f%% CPU",
			s.PID, s.CPUPercent, mib(s.RSSBytes), mib(s.PeakRSS), s.SelfCPU)
	}
	if r.OK {
		p("OK")
	} else {
		p("FAILED: %s", strings.Join(r.Problems, "; "))
	}
}

// cpuText is a phase's CPU time per answered call, server and load tool.
func cpuText(r ReportResult) string {
	if r.ServerCPUPerCall == 0 && r.ToolCPUPerCall == 0 {
		return ""
	}
	t := fmt.Sprintf("server %v, load tool %v", r.ServerCPUPerCall.Round(time.Microsecond), r.ToolCPUPerCall.Round(time.Microsecond))
	if both := r.ServerCPUPerCall + r.ToolCPUPerCall; both > 0 {
		// What two whole cores would answer at that cost, server and tool
		// sharing them as here: a projection, not a measurement.
		t += fmt.Sprintf(" (both: %v; two cores at that cost: %.0f calls/s)", both.Round(time.Microsecond), 2*float64(time.Second)/float64(both))
	}
	return t
}

func codesText(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return " [" + strings.Join(parts, ", ") + "]"
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
