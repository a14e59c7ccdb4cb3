package web_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mamori-dev/mamori/internal/browsertest"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestBrowserMFA drives Debian's Chromium (headless) as the helpdesk: it
// signs in, opens the MFA page from the navigation, issues a temporary
// code for a user through the real form (90 minutes) and reads it from
// the answer. The code is the one the store keeps the hash of, it is not
// in the address bar, and the MFA page shows it nowhere afterwards; the
// enrol form is not offered to the helpdesk. A screenshot of the code page
// and of the list after it
// are kept (console-mfa-code.png, console-mfa.png).
func TestBrowserMFA(t *testing.T) {
	testenv.Short(t)
	e := start(t)
	br := browsertest.Start(t, e.h.ConsoleURL, e.h.CAPool(), 60*time.Second)
	ctx, text, shot := br.Ctx, br.Text, br.Shot

	e.h.Clock.Advance(30 * time.Second)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.h.ConsoleURL+"/fleet"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login"), e.helpdesk.login),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("totp"), e.code(t, e.helpdesk)),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
		chromedp.Click(chromedp.CSS(`nav a[href="/mfa"]`)),
		chromedp.WaitVisible(chromedp.ID("temp-form")),
	); err != nil {
		t.Fatalf("sign in and open the MFA page: %v", err)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#enroll-form, form[action='/mfa/reset']").length`)); err != nil || n != 0 {
		t.Errorf("enrol or reset forms offered to the helpdesk: %d %v", n, err)
	}
	now := e.h.Clock.Now()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("temp-user"), "yamada"),
		chromedp.SetValue(chromedp.ID("temp-expires"), "90"),
		chromedp.Click(chromedp.ID("temp-submit")),
		chromedp.WaitVisible(chromedp.ID("code")),
	); err != nil {
		t.Fatalf("issue a temporary code: %v", err)
	}
	code := text("#code")
	if !regexp.MustCompile(`^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$`).MatchString(code) {
		t.Errorf("code %q is not XXXX-XXXX-XXXX", code)
	}
	want := now.Add(90 * time.Minute).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02 15:04:05 MST")
	if got := text("#code-expires"); got != want {
		t.Errorf("expiry shown %q, want %q", got, want)
	}
	shot("console-mfa-code.png")
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || strings.Contains(loc, code) || !strings.HasSuffix(loc, "/mfa/temp-code") {
		t.Errorf("address after the POST: %q %v", loc, err)
	}
	cs, err := e.h.Srv.Store().MFATempCodes(context.Background(), now)
	if err != nil || len(cs) != 1 || cs[0].User != "yamada" || cs[0].CreatedBy != e.helpdesk.opID ||
		!mfabundle.VerifyCode(cs[0].Hash, cs[0].Salt, code) || !mfabundle.IsCodeKDF(cs[0].Hash) {
		t.Fatalf("stored codes do not match the one shown: %+v %v", cs, err)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "mfa.temp_code", "user:yamada") {
		t.Error("the temporary code is not in the audit log")
	}
	// Back to the list: the user counts one active code; the code is gone.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href="/mfa"]:not(nav a)`)), chromedp.WaitVisible(chromedp.ID("mfa-users"))); err != nil {
		t.Fatalf("back to the MFA page: %v", err)
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil || strings.Contains(html, code) || !strings.Contains(text("#mfa-users"), "yamada") {
		t.Errorf("the MFA page after issuing: code shown again or yamada missing (%v)", err)
	}
	shot("console-mfa.png")
}
