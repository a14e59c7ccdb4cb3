package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/browsertest"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// terminals is the fleet of issue #19: three real agents' reports in two
// 所属, one non-compliant (a required control failed), one offline.
type terminals struct {
	failing, healthy, offline *servertest.Device
}

func (e *env) terminals(t *testing.T) terminals {
	t.Helper()
	ctx := context.Background()
	var ts terminals
	ts.failing = e.device(t, "zeimu-pc-01", mediaFailing())
	ts.healthy = e.device(t, "shimin-pc-02", healthy())
	ts.offline = e.device(t, "shimin-pc-03", healthy())
	for d, g := range map[*servertest.Device]string{ts.failing: "税務課", ts.healthy: "市民課", ts.offline: "市民課"} {
		if _, err := e.h.Srv.Store().SetDeviceGroup(ctx, d.ID, g); err != nil {
			t.Fatal(err)
		}
	}
	// Past the default max report age (10 minutes): the two that report
	// again are current, the third is offline.
	e.h.Clock.Advance(15 * time.Minute)
	for _, x := range []struct {
		d  *servertest.Device
		st *mamoriv1.ControlStatus
	}{{ts.failing, mediaFailing()}, {ts.healthy, healthy()}} {
		if _, err := x.d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{x.st}, PolicyVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.step(t)
	return ts
}

// mediaFailing: the agent's self-check failed (a required control), with
// a long evidence value that must wrap rather than widen the page.
func mediaFailing() *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: "agent", Mode: mamoriv1.Mode_MODE_ENFORCE,
		State: mamoriv1.ControlState_CONTROL_STATE_FAILED, Detail: "mamori-agent self-check failed: spool not writable",
		Evidence: map[string]string{
			"spool": "/var/lib/mamori-agent/spool/" + strings.Repeat("very-long-directory-name-", 8) + ": read-only file system",
		}, ObservedAt: timestamppb.Now()}
}

// signInBrowser signs in through the real form.
func (e *env) signInBrowser(t *testing.T, br *browsertest.Browser, a account) {
	t.Helper()
	e.h.Clock.Advance(30 * time.Second)
	if err := chromedp.Do(br.Ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/fleet"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login"), a.login),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("totp"), e.code(t, a)),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
}

// TestBrowserLayout opens every console page in Chromium at 1024, 1280
// and 1920 px wide, in Japanese and English, and measures from the DOM
// that no word is broken across lines in table headers, badges and host
// names (nor any Latin word anywhere outside long agent values), and that
// no element is narrower than its longest word. Times show their zone
// (JST). A screenshot of each page at each size is kept.
func TestBrowserLayout(t *testing.T) {
	testenv.Short(t)
	e := start(t)
	ts := e.terminals(t)
	br := browsertest.Start(t, e.h.ConsoleURL, e.h.CAPool(), 180*time.Second)
	e.signInBrowser(t, br, e.officer)

	pages := []struct{ name, path, wait string }{
		{"fleet", "/fleet", "counts"},
		{"device-failing", "/devices/" + ts.failing.ID, "controls"},
		{"device-offline", "/devices/" + ts.offline.ID, "controls"},
		{"incidents", "/incidents", "incidents"},
		{"search", "/search?q=shimin", "results"},
		{"policy", "/policy", "policy-version"},
		{"exceptions", "/exceptions", "exception-form"},
		{"ledger", "/ledger", "ledger-form"},
	}
	for _, lang := range []string{"ja", "en"} {
		if err := chromedp.Do(br.Ctx, chromedp.Navigate(e.h.ConsoleURL+"/lang/"+lang+"?next=/fleet"), chromedp.WaitVisible(chromedp.ID("counts"))); err != nil {
			t.Fatalf("language %s: %v", lang, err)
		}
		for _, w := range []int64{1024, 1280, 1920} {
			br.Viewport(w, 900)
			for _, pg := range pages {
				ctx, cancel := context.WithTimeout(br.Ctx, 15*time.Second)
				err := chromedp.Do(ctx, chromedp.Navigate(e.h.ConsoleURL+pg.path), chromedp.WaitVisible(chromedp.ID(pg.wait)))
				cancel()
				if err != nil {
					t.Errorf("%s %d %s: %v", lang, w, pg.name, err)
					continue
				}
				for _, b := range br.WordBreaks() {
					t.Errorf("%s at %d px, %s: %s", pg.name, w, lang, b)
				}
				br.Shot(fmt.Sprintf("layout-%s-%s-%d.png", pg.name, lang, w))
			}
		}
	}
	// Times carry their zone.
	if err := chromedp.Do(br.Ctx, chromedp.Navigate(e.h.ConsoleURL+"/devices/"+ts.failing.ID), chromedp.WaitVisible(chromedp.ID("controls"))); err != nil {
		t.Fatal(err)
	}
	if got := br.Text("main"); !strings.Contains(got, " JST") {
		t.Errorf("device page shows no JST time: %q", got)
	}
}
