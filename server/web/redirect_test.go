package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mamori-dev/mamori/internal/browsertest"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// hostileNext are redirect targets that leave the origin in some browser
// or through some parser; issue 14 item 6 is the first.
var hostileNext = []string{
	"/\t/evil.example/x", "/\n/evil.example/x", "/\r\n/evil.example", "//evil.example/x", "/\\evil.example",
	"https://evil.example/", "https:evil.example", "javascript:alert(1)", "/%09/evil.example", "/\u202e/x",
	"\t//evil.example", " /x", "",
}

// TestRedirectStaysLocal: the language toggle and the sign-in form (over
// the real server's HTTPS) send hostile next targets to /fleet, and keep
// a local one.
func TestRedirectStaysLocal(t *testing.T) {
	e := start(t)
	b := e.browser(t, "")
	// The request, byte for byte.
	if p := b.get("/lang/en?next=/%09/evil.example/x"); p.status != http.StatusSeeOther || p.loc != "/fleet" {
		t.Errorf("GET /lang/en?next=/%%09/evil.example/x: %d Location %q, want 303 /fleet", p.status, p.loc)
	}
	for _, next := range hostileNext {
		if p := b.get("/lang/en?next=" + url.QueryEscape(next)); p.loc != "/fleet" {
			t.Errorf("toggle next=%q: Location %q", next, p.loc)
		}
		// After a successful sign-in, too.
		s := e.browser(t, "")
		e.h.Clock.Advance(30 * time.Second)
		lp := s.get("/login?next=" + url.QueryEscape(next))
		if !strings.Contains(lp.body, `name="next" value="/fleet"`) {
			t.Errorf("sign-in form keeps next=%q:\n%s", next, lp.body)
		}
		p := s.post("/login", url.Values{"csrf": {csrfOf(t, lp)}, "login": {e.officer.login}, "password": {password},
			"totp": {e.code(t, e.officer)}, "next": {next}})
		if p.status != http.StatusSeeOther || p.loc != "/fleet" {
			t.Errorf("sign in with next=%q: %d Location %q", next, p.status, p.loc)
		}
	}
	if p := b.get("/lang/ja?next=" + url.QueryEscape("/search?q=京都")); !strings.EqualFold(p.loc, "/search?q=%E4%BA%AC%E9%83%BD") {
		t.Errorf("a local target is lost: %q", p.loc)
	}
}

// TestBrowserRedirectStaysOnOrigin: Chromium, which strips a tab from a
// Location, stays on the console's origin for the URL and after
// signing in from a sign-in link carrying it.
func TestBrowserRedirectStaysOnOrigin(t *testing.T) {
	testenv.Short(t)
	e := start(t)
	br := browsertest.Start(t, e.h.ConsoleURL, e.h.CAPool(), 60*time.Second)
	origin := e.h.ConsoleURL
	onOrigin := func(what string) {
		t.Helper()
		loc, err := chromedp.Run(br.Ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("%s: location: %v", what, err)
		}
		if !strings.HasPrefix(loc, origin+"/") {
			t.Fatalf("%s: the browser left the origin: %s", what, loc)
		}
	}
	for _, next := range []string{"/%09/evil.example/x", "/%5C/evil.example/x", "%2F%2Fevil.example/x"} {
		// A navigation off-site would fail (no network): its error is not
		// the test's; where the browser is, is.
		_ = chromedp.Do(br.Ctx, chromedp.Navigate(origin+"/lang/en?next="+next))
		onOrigin("toggle next=" + next)
	}
	_ = chromedp.Do(br.Ctx, chromedp.Navigate(origin+"/login?next=/%09/evil.example/x"))
	e.h.Clock.Advance(30 * time.Second)
	if err := chromedp.Do(br.Ctx,
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login"), e.officer.login),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("totp"), e.code(t, e.officer)),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	); err != nil {
		onOrigin("sign-in")
		t.Fatalf("sign in: %v", err)
	}
	onOrigin("after sign-in")
	if loc, _ := chromedp.Run(br.Ctx, chromedp.Location()); !strings.HasSuffix(loc, "/fleet") {
		t.Errorf("after sign-in at %s, want /fleet", loc)
	}
}
