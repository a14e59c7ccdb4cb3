package loadgen_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/loadgen"
	"github.com/mamori-dev/mamori/server/servertest"
)

func smallLoad(h *servertest.Harness) loadgen.Config {
	cfg := loadgen.DefaultConfig()
	cfg.Server, cfg.AdminServer, cfg.CA, cfg.AdminToken = h.Addr, h.AdminAddr, h.CAPool(), h.AdminToken
	cfg.Terminals, cfg.Interval, cfg.Duration = 20, 100*time.Millisecond, time.Second
	cfg.Mix = loadgen.Mix{USBBlocked: 0.5, MFAFailure: 0.5, StateFlip: 0.2}
	return cfg
}

// A small steady run against a real server: every terminal enrols with its
// own certificate, reports arrive at about the offered rate, and every
// event is found stored exactly once.
func TestSteady(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	res, err := loadgen.Run(context.Background(), smallLoad(h))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	res.WriteSummary(&sb)
	t.Log("\n" + sb.String())
	if !res.OK || res.Enroll.Enrolled != 20 || res.Reports.Failed != 0 {
		t.Fatalf("run not clean: %+v", res)
	}
	// 20 terminals × 10 reports/s for 1 s; allow for the ragged edges and
	// a busy machine (each terminal waits for its previous answer).
	if res.Reports.OK < 100 || res.Reports.OK > 230 {
		t.Errorf("%d reports, want about 200", res.Reports.OK)
	}
	v := res.Verify
	if v == nil || v.Acked == 0 || v.Stored != v.Acked || v.Missing+v.Duplicates+v.Unexpected != 0 {
		t.Errorf("verification: %+v", v)
	}
	fleet, err := h.Admin(t, h.AdminToken).FleetSummary(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fleet.Total != 20 {
		t.Errorf("fleet has %d devices, want 20", fleet.Total)
	}
}

// The warm-up connects every terminal and sends its full report before the
// timed phase, so that phase is differential from its first report; the
// baseline then runs over the same connections. A run without the warm-up
// still works (its first reports are the full ones).
func TestWarmupDifferentialBaseline(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	cfg := smallLoad(h)
	cfg.Differential, cfg.Baseline, cfg.EnrollConcurrency = true, true, 5
	cfg.Mix = loadgen.Mix{StateFlip: 0.05}
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	res.WriteSummary(&sb)
	t.Log("\n" + sb.String())
	w := res.Warmup
	if !res.OK || w == nil || w.Connected != 20 || w.Failed != 0 || w.P50 <= 0 || w.P99 < w.P50 {
		t.Fatalf("warm-up: %+v (run %+v)", w, res)
	}
	// A terminal's first call pays its TLS handshake (certificates both
	// ways: well over a kilobyte); a no-change report after it, far less.
	if w.WireBytes < 1500 || res.Reports.WireBytes <= 0 || res.Reports.WireBytes >= w.WireBytes/2 {
		t.Errorf("wire bytes: warm-up %.0f per terminal, reports %.0f per report", w.WireBytes, res.Reports.WireBytes)
	}
	if res.NeedFull != 0 || res.Reports.Failed != 0 || res.Baseline == nil || res.Baseline.OK < 100 || res.Ratio <= 0 {
		t.Errorf("timed phases: need_full %d, failed %d, baseline %+v, ratio %.2f", res.NeedFull, res.Reports.Failed, res.Baseline, res.Ratio)
	}
	if !strings.Contains(sb.String(), "warm-up: 20 terminals connected") {
		t.Errorf("summary has no warm-up line")
	}

	cfg.Warmup = false
	res, err = loadgen.Run(context.Background(), cfg)
	if err != nil || !res.OK || res.Warmup != nil {
		t.Fatalf("without warm-up: %v %+v", err, res)
	}
}

// A second run against the same server counts only its own terminals'
// events: the first run's stay in the store and are ignored.
func TestVerifyCountsOnlyItsOwnTerminals(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	first, err := loadgen.Run(context.Background(), smallLoad(h))
	if err != nil || !first.OK {
		t.Fatalf("first run: %v %+v", err, first)
	}
	second, err := loadgen.Run(context.Background(), smallLoad(h))
	if err != nil || !second.OK {
		t.Fatalf("second run on the same server: %v %+v", err, second)
	}
	if second.Verify.Stored != second.Verify.Acked {
		t.Errorf("second run counted %d stored for %d acknowledged", second.Verify.Stored, second.Verify.Acked)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := loadgen.DefaultConfig()
	cfg.Mode = loadgen.ModeReconnect
	err := cfg.Validate()
	for _, want := range []string{"server", "CA", "admin token", "restart"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}
