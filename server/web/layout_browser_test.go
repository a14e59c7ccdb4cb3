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
		{"devices", "/devices", "devices"},
		{"device-failing", "/devices/" + ts.failing.ID, "controls"},
		{"device-offline", "/devices/" + ts.offline.ID, "controls"},
		{"incidents", "/incidents", "incidents"},
		{"search", "/search?q=shimin", "results"},
		{"policy", "/policy", "policy-version"},
		{"exceptions", "/exceptions", "exception-form"},
		{"ledger", "/ledger", "ledger-form"},
		{"audit", "/audit", "audit"},
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
				if pg.name == "fleet" {
					firstScreen(t, br, fmt.Sprintf("%s at %d px", lang, w), lang)
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

// firstScreen checks the fleet page's first screen: the failing terminal's
// host name and reason, then the offline one, and the per-所属 rows, each
// read from the DOM with its box inside the viewport.
func firstScreen(t *testing.T, br *browsertest.Browser, where, lang string) {
	t.Helper()
	inside := func(sel string) {
		t.Helper()
		b, vw, vh := br.BoxOf(sel)
		if b.Top < 0 || b.Left < 0 || b.Bottom > vh || b.Right > vw || b.Bottom <= b.Top {
			t.Errorf("%s: %s at %+v is not inside the %.0fx%.0f viewport", where, sel, b, vw, vh)
		}
	}
	reason := map[string]string{"ja": "エージェント自己診断", "en": "Agent self-check"}[lang]
	offline := map[string]string{"ja": "報告がありません", "en": "No report for"}[lang]
	for _, x := range []struct{ sel, want string }{
		{"#attention tbody tr:nth-child(1) a.host", "zeimu-pc-01"},
		{"#attention tbody tr:nth-child(1) td.reason", reason},
		{"#attention tbody tr:nth-child(2) a.host", "shimin-pc-03"},
		{"#attention tbody tr:nth-child(2) td.reason", offline},
		{"#by-group tbody tr:nth-child(1) a", "市民課"},
		{"#by-group tbody tr:nth-child(2) a", "税務課"},
		{"#count-noncompliant", "1"},
	} {
		if got := br.Text(x.sel); !strings.Contains(got, x.want) {
			t.Errorf("%s: %s = %q, want %q", where, x.sel, got, x.want)
		}
		inside(x.sel)
	}
}

// TestBrowserTimeToAnswer: from the sign-in form to the page that says why
// the failing terminal fails, as the helpdesk, in at most three clicks
// (here: sign in, then the terminal on the fleet page). The answer — the
// failing required control, where it is required, since when, what to do —
// is in the first screen at 1280×900.
func TestBrowserTimeToAnswer(t *testing.T) {
	testenv.Short(t)
	e := start(t)
	ts := e.terminals(t)
	br := browsertest.Start(t, e.h.ConsoleURL, e.h.CAPool(), 60*time.Second)
	br.Viewport(1280, 900)
	clicks := 0
	click := func(sel string) chromedp.Action[chromedp.Void] {
		clicks++
		return chromedp.Click(chromedp.CSS(sel))
	}
	e.h.Clock.Advance(30 * time.Second)
	if err := chromedp.Do(br.Ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login"), e.helpdesk.login),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("totp"), e.code(t, e.helpdesk)),
		click("#login-submit"),
		chromedp.WaitVisible(chromedp.ID("attention")),
		click("#attention tbody tr:nth-child(1) a.host"),
		chromedp.WaitVisible(chromedp.ID("why")),
	); err != nil {
		t.Fatalf("sign in and open the failing terminal: %v", err)
	}
	if clicks > 3 {
		t.Errorf("%d clicks to the answer, want at most 3", clicks)
	}
	if got := br.Text("#device-title"); !strings.Contains(got, "zeimu-pc-01") {
		t.Fatalf("opened %q, want zeimu-pc-01 (%s)", got, ts.failing.ID)
	}
	got := br.Text("#why-sentence")
	for _, want := range []string{"エージェント自己診断", "基本ポリシー", "JST", "失敗", "非準拠", "spool not writable"} {
		if !strings.Contains(got, want) {
			t.Errorf("the answer %q lacks %q", got, want)
		}
	}
	if got := br.Text("#why-todo"); !strings.Contains(got, "対応") {
		t.Errorf("what to do: %q", got)
	}
	if got := br.Text("#device-group"); got != "税務課" {
		t.Errorf("所属 %q, want 税務課", got)
	}
	for _, sel := range []string{"#why-sentence", "#why-todo"} {
		b, vw, vh := br.BoxOf(sel)
		if b.Top < 0 || b.Bottom > vh || b.Right > vw {
			t.Errorf("%s at %+v is not in the first screen", sel, b)
		}
	}
	// Raw evidence is folded under the control's summary.
	open, err := chromedp.Run(br.Ctx, chromedp.Evaluate[bool](`document.querySelector('#controls details').open`))
	if err != nil || open {
		t.Errorf("evidence is not folded (open=%v, %v)", open, err)
	}
	br.Shot("answer-device.png")

	// The offline terminal says since when and marks its states as last known.
	if err := chromedp.Do(br.Ctx, chromedp.Navigate(e.h.ConsoleURL+"/devices/"+ts.offline.ID), chromedp.WaitVisible(chromedp.ID("why"))); err != nil {
		t.Fatal(err)
	}
	if got := br.Text("#why-sentence"); !strings.Contains(got, "以降") || !strings.Contains(got, "JST") || !strings.Contains(got, "最後に受け取った") {
		t.Errorf("offline answer %q", got)
	}
	if got := br.Text("#controls"); !strings.Contains(got, "最終報告時点") {
		t.Errorf("offline states not marked as last known: %q", got)
	}
	if got := br.Text("#stale"); !strings.Contains(got, "オフライン") {
		t.Errorf("stale notice %q", got)
	}
	br.Shot("answer-offline.png")
}
