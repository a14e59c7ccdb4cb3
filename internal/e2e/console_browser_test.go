package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/internal/browsertest"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/serve"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestConsoleShowsRealAgent: the agent's own code (enrolment, self-check,
// report loop) runs against the real server; its clock is five minutes
// ahead, so its self-check finds the skew and reports DEGRADED; the server
// judges the device NONCOMPLIANT; an officer signs in to the console in
// headless Chromium with password and TOTP and finds the device, with the
// agent's own reason, on the fleet page and on the device page.
// Screenshots go where MAMORI_TEST_ARTIFACTS says (else a temp dir).
func TestConsoleShowsRealAgent(t *testing.T) {
	testenv.Short(t)
	testenv.LookPath(t, "chromium", "chromium") // before the agent runs
	h := servertest.Start(t, servertest.Options{Console: true})

	const pw = "correct horse battery staple"
	op, _, err := serve.CreateOperator(ctx, h.Srv.Store(), "佐藤", auth.RoleOfficer, h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := serve.SetConsoleLogin(ctx, h.Srv.Store(), h.Srv.OperatorSeeds(), op, "officer-sato", pw, "test", h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}

	dir := enrolAgent(t, h, t.TempDir(), "kyoto-pc-21")
	skewed := func() time.Time { return h.Clock.Now().Add(5 * time.Minute) }
	a := startAgent(t, dir, skewed, "kyoto-pc-21")
	// The first report measures the skew (the server's time comes back),
	// the next one reports it.
	a.waitRound(t, "a report with the skew", func(r daemon.RoundResult) bool {
		for _, s := range r.Statuses {
			if s.Control == "agent" && s.State == mamoriv1.ControlState_CONTROL_STATE_DEGRADED && r.Err == nil {
				return true
			}
		}
		return false
	})
	a.waitRound(t, "one more report, stored", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()

	br := browsertest.Start(t, h.ConsoleURL, h.CAPool(), 90*time.Second)
	bctx, text, shot := br.Ctx, br.Text, br.Shot

	code, err := auth.TOTPCode(cl.TOTPSecret, h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx,
		chromedp.Navigate(h.ConsoleURL+"/fleet"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login"), "officer-sato"),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.SendKeys(chromedp.ID("totp"), code),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("attention")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if got := text("#attention"); !strings.Contains(got, "kyoto-pc-21") {
		t.Fatalf("the real agent's device is not in the list of terminals needing a person: %q", got)
	}
	shot("e2e-console-fleet-real-agent.png")
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#attention a.host")),
		chromedp.WaitVisible(chromedp.ID("controls")),
		// Raw evidence is folded under the control's summary, and the
		// reasons under theirs (issue #19): opened as a person would.
		chromedp.Click(chromedp.CSS("#controls details summary")),
		chromedp.Click(chromedp.CSS("#reasons summary")),
	); err != nil {
		t.Fatalf("open the device: %v", err)
	}
	if got := text("#device-state"); got != "非準拠" {
		t.Errorf("device state %q, want 非準拠", got)
	}
	// The agent's own words: its self-check's detail and evidence.
	if got := text("#controls"); !strings.Contains(got, "clock_skew_ms") && !strings.Contains(strings.ToLower(got), "skew") {
		t.Errorf("device page controls lack the agent's skew evidence: %q", got)
	}
	// The control by its Japanese name (issue #19: no identifiers in ja).
	if got := text("#reasons"); !strings.Contains(got, "エージェント自己診断") {
		t.Errorf("reasons %q do not name the agent control", got)
	}
	shot("e2e-console-device-real-agent.png")
}
