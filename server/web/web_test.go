package web_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/serve"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// The handler tests run the real mamori-server (servertest: real TLS,
// real SQLite, real gRPC for the agents) with its console on 127.0.0.1,
// and talk to the console over HTTPS like a browser without JavaScript.

const password = "correct horse battery staple"

type account struct {
	login, opID string
	totp        auth.Secret
}

type env struct {
	h        *servertest.Harness
	officer  account
	helpdesk account
}

func start(t *testing.T) *env {
	t.Helper()
	h := servertest.Start(t, servertest.Options{Console: true})
	e := &env{h: h}
	e.officer = e.account(t, "officer-sato", "佐藤", auth.RoleOfficer)
	e.helpdesk = e.account(t, "helpdesk-suzuki", "鈴木", auth.RoleHelpdesk)
	return e
}

func (e *env) account(t *testing.T, login, name string, role auth.Role) account {
	t.Helper()
	ctx := context.Background()
	op, _, err := serve.CreateOperator(ctx, e.h.Srv.Store(), name, role, e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := serve.SetConsoleLogin(ctx, e.h.Srv.Store(), e.h.Srv.OperatorSeeds(), op, login, password, "test", e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return account{login: login, opID: op.ID, totp: cl.TOTPSecret}
}

// browser is an HTTPS client with cookies that trusts only the server's
// CA and does not follow redirects, so tests see them.
type browser struct {
	t      *testing.T
	e      *env
	c      *http.Client
	lang   string
	header http.Header
}

func (e *env) browser(t *testing.T, acceptLanguage string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, e: e, lang: acceptLanguage, header: http.Header{}, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.h.CAPool(), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}}
}

type page struct {
	status int
	body   string
	loc    string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.h.ConsoleURL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(raw), loc: resp.Header.Get("Location")}
}

func (b *browser) get(path string) page { return b.do(http.MethodGet, path, nil) }
func (b *browser) post(path string, form url.Values) page {
	return b.do(http.MethodPost, path, form)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token in page (status %d):\n%s", p.status, p.body)
	}
	return m[1]
}

func (e *env) code(t *testing.T, a account) string {
	t.Helper()
	c, err := auth.TOTPCode(a.totp, e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signInWith posts the sign-in form; it returns the answer.
func (b *browser) signInWith(login, pw, code string) page {
	b.t.Helper()
	lp := b.get("/login")
	return b.post("/login", url.Values{"csrf": {csrfOf(b.t, lp)}, "login": {login}, "password": {pw}, "totp": {code}, "next": {"/fleet"}})
}

// signIn signs in and checks it worked. Each sign-in uses a new TOTP
// step: the clock moves 30 s first.
func (b *browser) signIn(a account) {
	b.t.Helper()
	b.e.h.Clock.Advance(30 * time.Second)
	p := b.signInWith(a.login, password, b.e.code(b.t, a))
	if p.status != http.StatusSeeOther || p.loc != "/fleet" {
		b.t.Fatalf("sign in as %s: status %d, location %q\n%s", a.login, p.status, p.loc, p.body)
	}
}

func (e *env) auditActions(t *testing.T) []store.AuditRecord {
	t.Helper()
	rs, err := e.h.Srv.Store().ListAudit(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func (e *env) hasAudit(t *testing.T, actor, action, target string) bool {
	t.Helper()
	for _, r := range e.auditActions(t) {
		if r.Actor == actor && r.Action == action && (target == "" || r.Target == target) {
			return true
		}
	}
	return false
}

// device enrols a device and sends one real report over mTLS gRPC.
func (e *env) device(t *testing.T, hostname string, st *mamoriv1.ControlStatus, evs ...*mamoriv1.Event) *servertest.Device {
	t.Helper()
	d, err := e.h.Enroll(t, e.h.Token(t, 1, 0), servertest.Facts(hostname, "machine-"+uuid.NewString()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Report(context.Background(), &mamoriv1.ReportRequest{
		Statuses: []*mamoriv1.ControlStatus{st}, Events: evs, PolicyVersion: 1,
	}); err != nil {
		t.Fatalf("report: %v", err)
	}
	return d
}

func failing(detail string, evidence map[string]string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: "agent", Mode: mamoriv1.Mode_MODE_ENFORCE,
		State: mamoriv1.ControlState_CONTROL_STATE_FAILED, Detail: detail, Evidence: evidence, ObservedAt: timestamppb.Now()}
}

func healthy() *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: "agent", Mode: mamoriv1.Mode_MODE_ENFORCE,
		State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ObservedAt: timestamppb.Now()}
}

func TestRoles(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-failing", failing("self-check failed", nil))

	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	p := hd.get("/devices/" + d.ID)
	if p.status != http.StatusOK || !strings.Contains(p.body, "pc-failing") {
		t.Fatalf("helpdesk device page: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "revoke-form") {
		t.Error("the helpdesk sees the revoke form")
	}
	// By form (with the helpdesk's own valid CSRF token) and by URL.
	tok := csrfOf(t, p) // the sign-out form's token
	if p := hd.post("/devices/"+d.ID+"/revoke", url.Values{"csrf": {tok}, "reason": {"盗難"}}); p.status != http.StatusForbidden {
		t.Errorf("helpdesk revoke by form: %d, want 403", p.status)
	}
	if p := hd.get("/devices/" + d.ID + "/revoke"); p.status != http.StatusMethodNotAllowed && p.status != http.StatusNotFound {
		t.Errorf("GET revoke URL: %d", p.status)
	}
	dev, err := e.h.Srv.Store().GetDevice(context.Background(), d.ID)
	if err != nil || !dev.RevokedAt.IsZero() {
		t.Fatalf("device revoked by a helpdesk: %v %v", dev.RevokedAt, err)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "console.denied", "POST /devices/"+d.ID+"/revoke") {
		t.Error("the refused revoke is not in the audit log")
	}

	off := e.browser(t, "")
	off.signIn(e.officer)
	p = off.get("/devices/" + d.ID)
	if !strings.Contains(p.body, "revoke-form") {
		t.Fatalf("the officer has no revoke form:\n%s", p.body)
	}
	if p := off.post("/devices/"+d.ID+"/revoke", url.Values{"csrf": {csrfOf(t, p)}, "reason": {""}}); p.status != http.StatusBadRequest {
		t.Errorf("revoke without a reason: %d, want 400", p.status)
	}
	p = off.post("/devices/"+d.ID+"/revoke", url.Values{"csrf": {csrfOf(t, p)}, "reason": {"盗難"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("officer revoke: %d\n%s", p.status, p.body)
	}
	dev, _ = e.h.Srv.Store().GetDevice(context.Background(), d.ID)
	if dev.RevokedAt.IsZero() || dev.RevokedReason != "盗難" {
		t.Errorf("device not revoked: %+v", dev)
	}
	if !e.hasAudit(t, e.officer.opID, "device.revoke", d.ID) {
		t.Error("the revoke is not in the audit log")
	}
	// The device's next report is refused: the revocation is real.
	if _, err := d.Client.Report(context.Background(), &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{healthy()}}); err == nil {
		t.Error("a revoked device may still report")
	}
	// Signed out: nothing but the sign-in page.
	anon := e.browser(t, "")
	if p := anon.get("/fleet"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, "/login") {
		t.Errorf("anonymous /fleet: %d %q", p.status, p.loc)
	}
	if p := anon.post("/devices/"+d.ID+"/revoke", url.Values{"reason": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("anonymous revoke: %d", p.status)
	}
	// Sign-out ends the session on the server.
	p = off.get("/fleet")
	if p := off.post("/logout", url.Values{"csrf": {csrfOf(t, p)}}); p.status != http.StatusSeeOther {
		t.Errorf("sign out: %d", p.status)
	}
	if p := off.get("/fleet"); p.status != http.StatusSeeOther {
		t.Errorf("/fleet after sign-out: %d", p.status)
	}
}

func TestCSRF(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-1", failing("x", nil))
	off := e.browser(t, "")
	off.signIn(e.officer)
	other := e.browser(t, "")
	other.signIn(e.helpdesk)
	otherTok := csrfOf(t, other.get("/fleet"))
	for name, form := range map[string]url.Values{
		"no token":                {"reason": {"x"}},
		"empty token":             {"csrf": {""}, "reason": {"x"}},
		"another session's token": {"csrf": {otherTok}, "reason": {"x"}},
	} {
		if p := off.post("/devices/"+d.ID+"/revoke", form); p.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, p.status)
		}
	}
	// A cross-site form post is refused even with the right token.
	tok := csrfOf(t, off.get("/devices/"+d.ID))
	off.header.Set("Origin", "https://evil.example")
	off.header.Set("Sec-Fetch-Site", "cross-site")
	if p := off.post("/devices/"+d.ID+"/revoke", url.Values{"csrf": {tok}, "reason": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", p.status)
	}
	off.header = http.Header{}
	if dev, _ := e.h.Srv.Store().GetDevice(context.Background(), d.ID); !dev.RevokedAt.IsZero() {
		t.Fatal("revoked by a forged request")
	}
	// Sign-in form: the double-submit token must match its cookie.
	b := e.browser(t, "")
	b.get("/login")
	e.h.Clock.Advance(30 * time.Second)
	p := b.post("/login", url.Values{"csrf": {"forged"}, "login": {e.officer.login}, "password": {password}, "totp": {e.code(t, e.officer)}})
	if p.status != http.StatusForbidden {
		t.Errorf("sign-in with a forged token: %d", p.status)
	}
	// Cookies: __Host-, Secure, HttpOnly, SameSite=Strict.
	b2 := e.browser(t, "")
	b2.c.Jar = nil
	lp := b2.get("/login")
	req, _ := http.NewRequest(http.MethodPost, e.h.ConsoleURL+"/login", strings.NewReader(url.Values{
		"csrf": {csrfOf(t, lp)}, "login": {e.officer.login}, "password": {password}, "totp": {e.code(t, e.officer)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "__Host-mamori_pre", Value: csrfOf(t, lp)})
	resp, err := b2.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-mamori_session" && c.Value != "" {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("session cookie attributes: %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("no session cookie (status %d)", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := start(t)
	b := e.browser(t, "")
	b.signIn(e.officer)
	e.h.Clock.Advance(14 * time.Minute)
	if p := b.get("/fleet"); p.status != http.StatusOK {
		t.Fatalf("after 14 idle minutes: %d", p.status)
	}
	e.h.Clock.Advance(15*time.Minute + time.Second)
	p := b.get("/fleet")
	if p.status != http.StatusSeeOther || !strings.Contains(p.loc, "m=expired") {
		t.Fatalf("after 15 idle minutes: %d %q", p.status, p.loc)
	}
	if p := b.get(p.loc); !strings.Contains(p.body, "セッションが終了しました") {
		t.Errorf("no expiry notice:\n%s", p.body)
	}
	if !e.hasAudit(t, e.officer.opID, "console.session.expire", "") {
		t.Error("expiry not audited")
	}
	// Busy sessions still end after MaxAge (8 h).
	b.signIn(e.officer)
	for range 36 { // 36 × 14 min = 8 h 24 min
		e.h.Clock.Advance(14 * time.Minute)
		b.get("/fleet")
	}
	if p := b.get("/fleet"); p.status != http.StatusSeeOther {
		t.Errorf("a session older than 8 h is still open: %d", p.status)
	}
}

func TestTOTPStep(t *testing.T) {
	e := start(t)
	b := e.browser(t, "en")
	e.h.Clock.Advance(30 * time.Second)
	for name, code := range map[string]string{"no code": "", "wrong code": "000000", "old code": func() string {
		c, _ := auth.TOTPCode(e.officer.totp, e.h.Clock.Now().Add(-5*time.Minute))
		return c
	}()} {
		if code == e.code(t, e.officer) {
			continue // the 1-in-a-million collision
		}
		p := b.signInWith(e.officer.login, password, code)
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Sign-in failed") {
			t.Errorf("%s: %d", name, p.status)
		}
	}
	if !e.hasAudit(t, e.officer.opID, "console.login.fail", "") {
		t.Error("failures not audited")
	}
	// Right password and code: in. The same code again: refused (replay).
	code := e.code(t, e.officer)
	if p := b.signInWith(e.officer.login, password, code); p.status != http.StatusSeeOther {
		t.Fatalf("right password and code: %d\n%s", p.status, p.body)
	}
	b2 := e.browser(t, "en")
	if p := b2.signInWith(e.officer.login, password, code); p.status != http.StatusUnauthorized {
		t.Errorf("replayed code: %d, want 401", p.status)
	}
	// A wrong password with the right code says the same as the reverse.
	e.h.Clock.Advance(30 * time.Second)
	p1 := b2.signInWith(e.officer.login, "wrong password!!", e.code(t, e.officer))
	p2 := b2.signInWith("nobody", password, e.code(t, e.officer))
	if p1.status != p2.status || !strings.Contains(p1.body, "Sign-in failed") || !strings.Contains(p2.body, "Sign-in failed") {
		t.Errorf("wrong password %d vs unknown login %d", p1.status, p2.status)
	}
}

func TestLockout(t *testing.T) {
	e := start(t)
	b := e.browser(t, "")
	for i := range 5 {
		p := b.signInWith(e.helpdesk.login, "wrong password!!", e.code(t, e.helpdesk))
		want := http.StatusUnauthorized
		if i == 4 {
			want = http.StatusTooManyRequests
		}
		if p.status != want {
			t.Fatalf("failure %d: %d, want %d", i+1, p.status, want)
		}
	}
	e.h.Clock.Advance(30 * time.Second)
	p := b.signInWith(e.helpdesk.login, password, e.code(t, e.helpdesk))
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "ロックされています") {
		t.Fatalf("right credentials while locked: %d\n%s", p.status, p.body)
	}
	if !e.hasAudit(t, "system", "console.lockout", e.helpdesk.opID) {
		t.Error("lock-out not audited")
	}
	// Other operators are not affected; after 15 minutes it opens again.
	e.browser(t, "").signIn(e.officer)
	e.h.Clock.Advance(15 * time.Minute)
	e.browser(t, "").signIn(e.helpdesk)
}

const hostile = `<script>alert("h")</script><img src=x onerror=alert(1)>"'&`

func TestHostileAgentDataIsEscaped(t *testing.T) {
	e := start(t)
	d := e.device(t, hostile, failing(hostile, map[string]string{hostile: hostile}),
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: hostile,
			Attributes: map[string]string{"usb_serial": hostile, "user": hostile, hostile: "k"}})
	b := e.browser(t, "")
	b.signIn(e.officer)
	for _, path := range []string{"/fleet", "/devices/" + d.ID, "/search?q=" + url.QueryEscape("<script>"), "/search?q=" + url.QueryEscape(hostile)} {
		p := b.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", path, p.status)
		}
		for _, raw := range []string{"<script>", "<img", "onerror=alert"} {
			if strings.Contains(strings.ReplaceAll(p.body, "&lt;img src=x onerror=alert", ""), raw) {
				t.Errorf("%s: raw %q in the page", path, raw)
			}
		}
		if !strings.Contains(p.body, "&lt;script&gt;") {
			t.Errorf("%s: the hostile text is not shown escaped", path)
		}
	}
}

func TestLanguages(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-lang", failing("self-check failed", map[string]string{"k": "v"}),
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: "usb_blocked"})
	pages := []string{"/fleet", "/devices/" + d.ID, "/search?q=pc", "/devices/nope"}
	for _, tc := range []struct {
		name, accept, toggle, want, notWant string
	}{
		{"default is Japanese", "", "", "端末の準拠状況", "Fleet compliance"},
		{"unknown language falls back to Japanese", "fr-FR,de;q=0.8", "", "端末の準拠状況", "Fleet compliance"},
		{"Accept-Language en", "en-US,en;q=0.9", "", "Fleet compliance", "端末の準拠状況"},
		{"Accept-Language ja over en", "ja,en;q=0.5", "", "端末の準拠状況", "Fleet compliance"},
		{"toggle to English wins", "ja", "en", "Fleet compliance", "端末の準拠状況"},
		{"toggle to Japanese wins", "en", "ja", "端末の準拠状況", "Fleet compliance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t, tc.accept)
			b.signIn(e.officer)
			if tc.toggle != "" {
				p := b.get("/lang/" + tc.toggle + "?next=" + url.QueryEscape("/fleet"))
				if p.status != http.StatusSeeOther || p.loc != "/fleet" {
					t.Fatalf("toggle: %d %q", p.status, p.loc)
				}
			}
			if p := b.get("/fleet"); !strings.Contains(p.body, tc.want) || strings.Contains(p.body, tc.notWant) {
				t.Errorf("fleet page: want %q, not %q", tc.want, tc.notWant)
			}
			for _, path := range append(pages, "/login") {
				p := b.get(path)
				if strings.Contains(p.body, "[console.") {
					t.Errorf("%s: a message is missing from the catalog:\n%s", path, p.body)
				}
			}
		})
	}
	// The toggle never redirects off-site.
	b := e.browser(t, "")
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example"} {
		if p := b.get("/lang/en?next=" + url.QueryEscape(next)); p.loc != "/fleet" {
			t.Errorf("next=%s: redirect to %q", next, p.loc)
		}
	}
}

func TestFleetAndSearch(t *testing.T) {
	e := start(t)
	e.device(t, "kyoto-pc-01", failing("self-check failed", nil))
	e.device(t, "kyoto-pc-02", healthy())
	e.device(t, "osaka-pc-01", healthy())
	b := e.browser(t, "en")
	b.signIn(e.helpdesk)
	p := b.get("/fleet")
	// Each count is a link to its list (issue #19); the failing terminal
	// is in the list of those needing a person.
	for _, want := range []string{`id="count-compliant" href="/devices?state=compliant"><span class="n">2</span>`,
		`id="count-noncompliant" href="/devices?state=noncompliant"><span class="n">1</span>`,
		`id="attention"`, "kyoto-pc-01", "Agent self-check", "Since"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("fleet page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "osaka-pc-01") {
		t.Error("a compliant device is in the list of terminals needing a person")
	}
	p = b.get("/search?q=kyoto")
	if !strings.Contains(p.body, "kyoto-pc-01") || !strings.Contains(p.body, "kyoto-pc-02") || strings.Contains(p.body, "osaka") || !strings.Contains(p.body, "2 found") {
		t.Errorf("search kyoto:\n%s", p.body)
	}
}

func TestOps(t *testing.T) {
	e := start(t)
	e.device(t, "pc-a", failing("x", nil))
	e.device(t, "pc-b", healthy())
	b := e.browser(t, "")
	b.signInWith(e.officer.login, "wrong password!!", e.code(t, e.officer))
	b.signIn(e.officer)
	if p := b.get("/healthz"); p.status != http.StatusOK {
		t.Errorf("healthz %d", p.status)
	}
	if p := b.get("/readyz"); p.status != http.StatusOK || !strings.Contains(p.body, "ready") {
		t.Errorf("readyz %d %q", p.status, p.body)
	}
	p := b.get("/metrics")
	for _, want := range []string{`mamori_devices{state="compliant"} 1`, `mamori_devices{state="noncompliant"} 1`,
		"mamori_policy_version 1", "mamori_console_logins_total 1", "mamori_console_login_failures_total 1",
		// The gRPC server's, from the two devices' enrolments and reports.
		"mamori_reports_ingested_total 2",
		`mamori_rpc_total{method="/mamori.v1.AgentService/Report",code="OK"} 2`,
		`mamori_rpc_total{method="/mamori.v1.AgentService/Enroll",code="OK"} 2`,
		`mamori_rpc_duration_seconds_bucket{method="/mamori.v1.AgentService/Report",le="+Inf"} 2`,
		`mamori_rpc_duration_seconds_count{method="/mamori.v1.AgentService/Report"} 2`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, p.body)
		}
	}
	// Every histogram's buckets are cumulative and end at the count.
	var last uint64
	for _, l := range strings.Split(p.body, "\n") {
		if strings.HasPrefix(l, `mamori_rpc_duration_seconds_bucket{method="/mamori.v1.AgentService/Report"`) {
			f := strings.Fields(l)
			n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
			if err != nil || n < last {
				t.Errorf("bucket line %q: not cumulative (after %d)", l, last)
			}
			last = n
		}
	}
}

// A control's detail reported as a catalogue message is shown in the
// reader's language: in the control table, the non-compliance reasons and
// the latest history entry. An unknown message or a wrong argument count
// shows the agent's English detail; arguments are escaped like any agent
// text.
func TestControlDetailLanguages(t *testing.T) {
	e := start(t)
	withID := func(detail, id string, args ...string) *mamoriv1.ControlStatus {
		st := failing(detail, nil)
		st.DetailId, st.DetailArgs = id, args
		return st
	}
	const en = "clock is 1m30s off the server (allowed 1m0s): check NTP/time sync on this terminal"
	const ja = "時計がサーバーと 1m30s ずれています (許容 1m0s)"
	known := e.device(t, "pc-detail", withID(en, "detail.agent.clock-skew", "1m30s", "1m0s"))
	unknown := e.device(t, "pc-newer", withID("something a newer agent says", "detail.agent.from-the-future", "x"))
	mismatch := e.device(t, "pc-mismatch", withID("the English fallback", "detail.agent.clock-skew", "only one"))
	notDetail := e.device(t, "pc-not-detail", withID("not a detail message", "console.device.revoke"))
	hostileArg := e.device(t, "pc-hostile", withID("english <b>text</b>", "detail.media.udev-masked", "<script>alert(1)</script>"))
	// Several problems: each shown in the reader's language when all are
	// known; the English list in the frame when one is not.
	const twoEN = "2 problems: udev rule masked by <x>: remove that file; uevent listener not running"
	withParts := func(parts ...*mamoriv1.DetailPart) *mamoriv1.ControlStatus {
		st := withID(twoEN, "detail.problems", "2", "udev rule masked by <x>: remove that file; uevent listener not running")
		st.DetailParts = parts
		return st
	}
	masked := &mamoriv1.DetailPart{Id: "detail.media.udev-masked", Args: []string{"<x>"}}
	two := e.device(t, "pc-two", withParts(masked, &mamoriv1.DetailPart{Id: "detail.media.listener-down"}))
	twoUnknown := e.device(t, "pc-two-newer", withParts(masked, &mamoriv1.DetailPart{Id: "detail.media.from-the-future"}))
	// A past change keeps its message: after the clock is fixed, the
	// history still shows the skew in the reader's language.
	fixed := e.device(t, "pc-fixed", withID(en, "detail.agent.clock-skew", "1m30s", "1m0s"))
	if _, err := fixed.Client.Report(context.Background(), &mamoriv1.ReportRequest{
		Statuses: []*mamoriv1.ControlStatus{healthy()}, PolicyVersion: 1}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, accept, id string
		want, notWant    []string
	}{
		{"Japanese", "ja", known.ID, []string{ja, "エージェント自己診断: 失敗（" + ja}, []string{"clock is 1m30s"}},
		{"English", "en", known.ID, []string{en, "Agent self-check: Failed (" + en + ")"}, []string{"時計がサーバーと"}},
		{"unknown id falls back to detail", "ja", unknown.ID, []string{"something a newer agent says"}, []string{"[detail."}},
		{"wrong arg count falls back to detail", "ja", mismatch.ID, []string{"the English fallback"}, []string{"時計がサーバーと", "%!"}},
		{"not a detail message", "ja", notDetail.ID, []string{"not a detail message"}, []string{"この端末を失効させる</div>"}},
		{"hostile argument escaped", "ja", hostileArg.ID, []string{"udev ルールが &lt;script&gt;alert(1)&lt;/script&gt; で無効化されています"}, []string{"<script>alert(1)"}},
		{"hostile argument escaped in English", "en", hostileArg.ID, []string{"udev rule masked by &lt;script&gt;alert(1)&lt;/script&gt;: remove that file"}, []string{"<script>alert(1)"}},
		{"several problems, each in Japanese", "ja", two.ID, []string{"2 件の問題: udev ルールが &lt;x&gt; で無効化されています"}, []string{"uevent listener not running", "<x>"}},
		{"several problems in English", "en", two.ID, []string{"2 problems: udev rule masked by &lt;x&gt;: remove that file; uevent listener not running"}, nil},
		{"a past change in Japanese", "ja", fixed.ID, []string{"<td>" + ja}, []string{"clock is 1m30s"}},
		{"a past change in English", "en", fixed.ID, []string{"<td>" + en}, []string{"時計がサーバーと"}},
		{"an unknown problem keeps the English list", "ja", twoUnknown.ID, []string{"2 件の問題: udev rule masked by &lt;x&gt;: remove that file; uevent listener not running"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t, tc.accept)
			b.signIn(e.officer)
			p := b.get("/devices/" + tc.id)
			if p.status != http.StatusOK {
				t.Fatalf("status %d", p.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(p.body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(p.body, nw) {
					t.Errorf("page has %q", nw)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", p.body)
			}
		})
	}
}

// Event kinds on the device page are named in the reader's language, with
// the kind itself beside the name; a kind the console does not know is
// shown as it is, escaped.
func TestEventKindNames(t *testing.T) {
	e := start(t)
	ev := func(kind string) *mamoriv1.Event {
		return &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: kind}
	}
	d := e.device(t, "pc-events", healthy(), ev("usb_blocked"), ev("<b>from_the_future</b>"))
	for _, tc := range []struct{ accept, want string }{
		{"ja", `USB デバイスの使用を禁止 <code class="mute">usb_blocked</code>`},
		{"en", `USB device blocked <code class="mute">usb_blocked</code>`},
	} {
		b := e.browser(t, tc.accept)
		b.signIn(e.officer)
		p := b.get("/devices/" + d.ID)
		if !strings.Contains(p.body, tc.want) {
			t.Errorf("%s: page lacks %q", tc.accept, tc.want)
		}
		if !strings.Contains(p.body, "<td>&lt;b&gt;from_the_future&lt;/b&gt;</td>") || strings.Contains(p.body, "<b>from_the_future") {
			t.Errorf("%s: unknown kind not shown escaped as it is", tc.accept)
		}
	}
}
