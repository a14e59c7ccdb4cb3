package web_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	chromium := testenv.LookPath(t, "chromium", "chromium")
	e := start(t)
	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Chromium trusts exactly the console's key (SPKI pin).
	u, _ := url.Parse(e.h.ConsoleURL)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: e.h.CAPool()})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "ja-JP"),
		chromedp.Flag("accept-lang", "ja-JP,ja"),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

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
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	shot("console-mfa-code.png")
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || strings.Contains(loc, code) || !strings.HasSuffix(loc, "/mfa/temp-code") {
		t.Errorf("address after the POST: %q %v", loc, err)
	}
	cs, err := e.h.Srv.Store().MFATempCodes(context.Background(), now)
	if err != nil || len(cs) != 1 || cs[0].User != "yamada" || cs[0].CreatedBy != e.helpdesk.opID ||
		mfabundle.HashRecoveryCode(cs[0].Salt, code) != cs[0].Hash {
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
