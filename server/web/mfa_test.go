package web_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// lockedBuffer collects the server's log from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startWithLog is start with the server's log captured.
func startWithLog(t *testing.T) (*env, *lockedBuffer) {
	t.Helper()
	var log lockedBuffer
	e := &env{h: servertest.Start(t, servertest.Options{Console: true, Log: &log})}
	e.officer = e.account(t, "officer-sato", "佐藤", auth.RoleOfficer)
	e.helpdesk = e.account(t, "helpdesk-suzuki", "鈴木", auth.RoleHelpdesk)
	return e, &log
}

func (e *env) auditFor(t *testing.T, actor, action, target string) []store.AuditRecord {
	t.Helper()
	var out []store.AuditRecord
	for _, r := range e.auditActions(t) {
		if r.Actor == actor && r.Action == action && (target == "" || r.Target == target) {
			out = append(out, r)
		}
	}
	return out
}

var (
	codeRE      = regexp.MustCompile(`<code id="code">([^<]+)</code>`)
	totpSecRE   = regexp.MustCompile(`<code id="totp-secret">([^<]+)</code>`)
	recoveryRE  = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)
	otpauthURIR = regexp.MustCompile(`<code id="otpauth-uri">(otpauth://[^<]+)</code>`)
)

// TestMFARoles: the helpdesk reads the MFA page, unlocks and issues
// temporary codes, but cannot enrol or reset, neither by URL nor by form
// with its own valid CSRF token; the officer can. Every action is audited
// with the operator as actor and the RPC's action names.
func TestMFARoles(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	d := e.device(t, "pc-mfa-01", failing("x", nil))
	help, off := e.browser(t, ""), e.browser(t, "")
	help.signIn(e.helpdesk)
	off.signIn(e.officer)

	hp := help.get("/mfa")
	if hp.status != http.StatusOK || !strings.Contains(hp.body, `href="/mfa"`) {
		t.Fatalf("helpdesk GET /mfa: %d\n%s", hp.status, hp.body)
	}
	if strings.Contains(hp.body, `action="/mfa/enroll"`) || strings.Contains(hp.body, `action="/mfa/reset"`) {
		t.Error("the enrol or reset form is shown to the helpdesk")
	}
	hcsrf := csrfOf(t, hp)
	for _, path := range []string{"/mfa/enroll", "/mfa/reset"} {
		if p := help.post(path, url.Values{"csrf": {hcsrf}, "user": {"tanaka"}, "reason": {"x"}}); p.status != http.StatusForbidden {
			t.Errorf("helpdesk POST %s: %d, want 403", path, p.status)
		}
		if len(e.auditFor(t, e.helpdesk.opID, "console.denied", "POST "+path)) != 1 {
			t.Errorf("helpdesk POST %s not audited as console.denied", path)
		}
		if p := help.get(path); p.status != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d, want 405", path, p.status)
		}
	}
	if us, _ := e.h.Srv.Store().MFAUsers(ctx); len(us) != 0 {
		t.Fatalf("the helpdesk's forms enrolled someone: %v", us)
	}

	// The officer enrols: the URI, a QR code and the recovery codes, once.
	op := off.get("/mfa")
	ocsrf := csrfOf(t, op)
	if !strings.Contains(op.body, `action="/mfa/enroll"`) {
		t.Fatal("no enrol form for the officer")
	}
	en := off.post("/mfa/enroll", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}})
	if en.status != http.StatusOK {
		t.Fatalf("enrol: %d\n%s", en.status, en.body)
	}
	m := otpauthURIR.FindStringSubmatch(en.body)
	if m == nil || !strings.Contains(en.body, `id="totp-qr"`) || !strings.Contains(m[1], "secret=") {
		t.Fatalf("enrol page lacks the otpauth URI or the QR code:\n%s", en.body)
	}
	if strings.Contains(en.body, "[console.") || !strings.Contains(en.body, "利用者を登録しました") {
		t.Error("the enrol page (ja) misses a message")
	}
	codes := recoveryRE.FindAllStringSubmatch(en.body, -1)
	if len(codes) == 0 {
		t.Fatal("no recovery codes shown")
	}
	recs := e.auditFor(t, e.officer.opID, "mfa.enroll", "user:tanaka")
	if len(recs) != 1 {
		t.Fatalf("mfa.enroll audit records: %v", recs)
	}
	secret := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(m[1])
	for _, r := range e.auditActions(t) {
		if (secret != nil && strings.Contains(r.Detail, secret[1])) || strings.Contains(r.Detail, codes[0][1]) {
			t.Errorf("audit record %d holds the secret or a recovery code: %q", r.Seq, r.Detail)
		}
	}
	if list := off.get("/mfa"); strings.Contains(list.body, codes[0][1]) || (secret != nil && strings.Contains(list.body, secret[1])) {
		t.Error("the list shows a secret or a recovery code again")
	}
	if p := off.post("/mfa/enroll", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}}); p.status != http.StatusConflict {
		t.Errorf("enrol twice: %d, want 409", p.status)
	}
	if p := off.post("/mfa/enroll", url.Values{"csrf": {ocsrf}, "user": {"Bad User"}}); p.status != http.StatusBadRequest {
		t.Errorf("enrol an invalid name: %d, want 400", p.status)
	}

	// The helpdesk unlocks on every terminal, on one by hostname and by ID.
	for _, tc := range []struct{ device, detail string }{
		{"", "all devices unlock=1 "},
		{"pc-mfa-01", "device " + d.ID + " unlock=1 "},
		{d.ID, "device " + d.ID + " unlock=2 "},
	} {
		p := help.post("/mfa/unlock", url.Values{"csrf": {hcsrf}, "user": {"tanaka"}, "device": {tc.device}})
		if p.status != http.StatusOK || !strings.Contains(p.body, `class="notice"`) {
			t.Fatalf("unlock on %q: %d\n%s", tc.device, p.status, p.body)
		}
		found := false
		for _, r := range e.auditFor(t, e.helpdesk.opID, "mfa.unlock", "user:tanaka") {
			found = found || strings.HasPrefix(r.Detail, tc.detail)
		}
		if !found {
			t.Errorf("unlock on %q: no mfa.unlock record with detail %q", tc.device, tc.detail)
		}
	}
	if p := help.post("/mfa/unlock", url.Values{"csrf": {hcsrf}, "user": {"tanaka"}, "device": {"pc-nowhere"}}); p.status != http.StatusBadRequest {
		t.Errorf("unlock on an unknown terminal: %d, want 400", p.status)
	}
	if p := help.post("/mfa/unlock", url.Values{"csrf": {hcsrf}, "user": {"<script>"}}); p.status != http.StatusBadRequest {
		t.Errorf("unlock an invalid name: %d, want 400", p.status)
	}

	// The officer resets, with a reason only.
	if p := off.post("/mfa/reset", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}}); p.status != http.StatusBadRequest {
		t.Errorf("reset without a reason: %d, want 400", p.status)
	}
	if p := off.post("/mfa/reset", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}, "reason": {strings.Repeat("x", 513)}}); p.status != http.StatusBadRequest {
		t.Errorf("reset with a reason over the audit log's 512 bytes: %d, want 400", p.status)
	}
	if p := off.post("/mfa/reset", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}, "reason": {"端末紛失"}}); p.status != http.StatusOK {
		t.Fatalf("reset: %d\n%s", p.status, p.body)
	}
	if rs := e.auditFor(t, e.officer.opID, "mfa.reset", "user:tanaka"); len(rs) != 1 || !strings.Contains(rs[0].Detail, `reason="端末紛失`) {
		t.Errorf("mfa.reset audit records: %v", rs)
	}
	if us, _ := e.h.Srv.Store().MFAUsers(ctx); len(us) != 0 {
		t.Errorf("still enrolled after the reset: %v", us)
	}
	if p := off.post("/mfa/reset", url.Values{"csrf": {ocsrf}, "user": {"tanaka"}, "reason": {"again"}}); p.status != http.StatusNotFound {
		t.Errorf("reset twice: %d, want 404", p.status)
	}
}

// TestMFATempCodeOnce: the temporary code is in the answer to the POST,
// once, with its expiry; never in a URL, the list, the audit log or the
// server's log; and it is the code the store keeps the hash of.
func TestMFATempCodeOnce(t *testing.T) {
	e, log := startWithLog(t)
	help := e.browser(t, "en")
	help.signIn(e.helpdesk)
	csrf := csrfOf(t, help.get("/mfa"))
	for _, bad := range []string{"0", "1441", "x", "-5", "153722867280912931"} {
		if p := help.post("/mfa/temp-code", url.Values{"csrf": {csrf}, "user": {"yamada"}, "expires": {bad}}); p.status != http.StatusBadRequest {
			t.Errorf("expires %q: %d, want 400", bad, p.status)
		}
	}
	// A privileged user (root): refused with the rule (issue 21), 403.
	if p := help.post("/mfa/temp-code", url.Values{"csrf": {csrf}, "user": {"root"}, "expires": {"30"}}); p.status != http.StatusForbidden ||
		!strings.Contains(p.body, "privileged user") || !strings.Contains(p.body, "mamorictl mfa temp-code --device") {
		t.Errorf("root's temp code from the helpdesk: %d\n%s", p.status, p.body)
	}
	now := e.h.Clock.Now()
	p := help.post("/mfa/temp-code", url.Values{"csrf": {csrf}, "user": {"yamada"}, "expires": {"30"}})
	if p.status != http.StatusOK || p.loc != "" {
		t.Fatalf("issue: %d %q\n%s", p.status, p.loc, p.body)
	}
	m := codeRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no code on the page:\n%s", p.body)
	}
	code := m[1]
	if strings.Contains(p.body, "[console.") || !strings.Contains(p.body, "Temporary code") {
		t.Error("the code page (en) misses a message")
	}
	if n := strings.Count(p.body, code); n != 1 {
		t.Errorf("the code is %d times on the page, want once", n)
	}
	// The language toggle on the answer leads back to the MFA page (a GET
	// the console serves), not to the form's POST address.
	if !regexp.MustCompile(`href="/lang/ja\?next=(%2f|/)mfa"`).MatchString(p.body) {
		t.Error("the language toggle on the code page does not lead to /mfa")
	}
	want := now.Add(30 * time.Minute).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02 15:04:05 MST")
	if !strings.Contains(p.body, want) {
		t.Errorf("the page does not show the expiry %s", want)
	}
	cs, err := e.h.Srv.Store().MFATempCodes(context.Background(), now)
	if err != nil || len(cs) != 1 || cs[0].User != "yamada" || !cs[0].ExpiresAt.Equal(now.Add(30*time.Minute)) {
		t.Fatalf("stored codes: %v %v", cs, err)
	}
	if !mfabundle.VerifyCode(cs[0].Hash, cs[0].Salt, code) || !mfabundle.IsCodeKDF(cs[0].Hash) {
		t.Error("the code shown is not the code stored")
	}
	recs := e.auditFor(t, e.helpdesk.opID, "mfa.temp_code", "user:yamada")
	if len(recs) != 1 || !strings.Contains(recs[0].Detail, "id="+cs[0].ID) {
		t.Errorf("mfa.temp_code audit records: %v", recs)
	}
	for _, r := range e.auditActions(t) {
		if strings.Contains(r.Detail, code) || strings.Contains(r.Target, code) {
			t.Errorf("audit record %d holds the code: %+v", r.Seq, r)
		}
	}
	list := help.get("/mfa")
	if strings.Contains(list.body, code) {
		t.Error("the list shows the code again")
	}
	if !regexp.MustCompile(`<td>yamada</td><td>none</td><td>-</td><td>0</td><td>1</td>`).MatchString(list.body) {
		t.Errorf("the list does not count the active code of yamada:\n%s", list.body)
	}
	if strings.Contains(log.String(), code) {
		t.Error("the server's log holds the code")
	}
	// The default expiry is one hour.
	p = help.post("/mfa/temp-code", url.Values{"csrf": {csrf}, "user": {"yamada"}})
	if p.status != http.StatusOK {
		t.Fatalf("issue with the default expiry: %d", p.status)
	}
	if want := now.Add(time.Hour).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02 15:04:05 MST"); !strings.Contains(p.body, want) {
		t.Errorf("default expiry: the page does not show %s", want)
	}
}

// TestMFACSRF: each MFA and operator-reset form refuses a missing, empty
// or another session's token, and nothing happens.
func TestMFACSRF(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	a, other := e.browser(t, ""), e.browser(t, "")
	a.signIn(admin)
	other.signIn(e.officer)
	foreign := csrfOf(t, other.get("/mfa"))
	before := len(e.auditActions(t))
	for _, path := range []string{"/mfa/unlock", "/mfa/temp-code", "/mfa/enroll", "/mfa/reset",
		"/operators/" + e.helpdesk.opID + "/password", "/operators/" + e.helpdesk.opID + "/totp"} {
		for name, tok := range map[string][]string{"missing": nil, "empty": {""}, "another session's": {foreign}} {
			f := url.Values{"user": {"csrfuser"}, "reason": {"r"}, "password": {"a new password 12345"}}
			if tok != nil {
				f["csrf"] = tok
			}
			if p := a.post(path, f); p.status != http.StatusForbidden {
				t.Errorf("POST %s with %s token: %d, want 403", path, name, p.status)
			}
		}
	}
	for _, r := range e.auditActions(t)[before:] {
		if r.Action != "console.denied" {
			t.Errorf("a refused form left %s", r.Action)
		}
	}
	if cs, _ := e.h.Srv.Store().MFATempCodes(context.Background(), e.h.Clock.Now()); len(cs) != 0 {
		t.Errorf("temporary codes issued without a token: %v", cs)
	}
	// The helpdesk's password still works.
	b := e.browser(t, "")
	b.signIn(e.helpdesk)
}

// TestMFAPageEscapes: user names that reach the store some other way are
// shown escaped, bidi controls as code points ("+" is &#43; in HTML);
// in Japanese and English.
func TestMFAPageEscapes(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	for i, u := range []string{`<script>alert(1)</script>`, "invoice\u202etxt.exe", "hoshino"} {
		if _, err := e.h.Srv.Store().PutMFAUser(ctx, store.MFAUser{User: u, SealedSecret: []byte{1}, Algorithm: "SHA1", Digits: 6,
			PeriodSeconds: 30, RecoverySalt: []byte{}, RecoveryHashes: []string{"00", "11"}, CreatedAt: e.h.Clock.Now(),
			Method: store.MFAMethodTOTPHardware, TokenSerial: "SN\u202e-<b>" + strings.Repeat("x", i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ lang, title, unlock string }{
		{"ja", "多要素認証の利用者", "ロック解除"},
		{"en", "MFA users", "Unlock"},
	} {
		b := e.browser(t, tc.lang)
		b.signIn(e.helpdesk)
		p := b.get("/mfa")
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", tc.lang, p.status)
		}
		for _, bad := range []string{"<script>alert", "\u202e", "<b>", "[console."} {
			if strings.Contains(p.body, bad) {
				t.Errorf("%s: the page contains %q", tc.lang, bad)
			}
		}
		for _, good := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "invoice[U&#43;202E]txt.exe", "SN[U&#43;202E]-&lt;b&gt;", tc.title, tc.unlock,
			`<html lang="` + tc.lang + `">`} {
			if !strings.Contains(p.body, good) {
				t.Errorf("%s: the page lacks %q", tc.lang, good)
			}
		}
		// Only the valid name gets action forms.
		if n := strings.Count(p.body, `<input type="hidden" name="user" value="`); n != 2 { // unlock + temp code of hoshino
			t.Errorf("%s: %d per-user action forms, want 2", tc.lang, n)
		}
	}
}

// TestOperatorReset: an admin sets a new password (the old one stops
// working, the new one works with the same TOTP) and a new TOTP secret
// (shown once with a QR code; the old authenticator stops working).
// Not oneself, not by an officer; audited without the secrets.
func TestOperatorReset(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	adm, off := e.browser(t, ""), e.browser(t, "")
	adm.signIn(admin)
	off.signIn(e.officer)
	ap := adm.get("/operators")
	if !strings.Contains(ap.body, `action="/operators/`+e.helpdesk.opID+`/password"`) || strings.Contains(ap.body, `action="/operators/`+admin.opID+`/password"`) {
		t.Error("the reset forms are missing for another operator, or shown for oneself")
	}
	csrf := csrfOf(t, ap)
	const newPW = "a brand new passphrase 2026"
	for _, path := range []string{"/operators/" + e.helpdesk.opID + "/password", "/operators/" + e.helpdesk.opID + "/totp"} {
		if p := off.post(path, url.Values{"csrf": {csrfOf(t, off.get("/fleet"))}, "password": {newPW}}); p.status != http.StatusForbidden {
			t.Errorf("officer POST %s: %d, want 403", path, p.status)
		}
	}
	for _, path := range []string{"/operators/" + admin.opID + "/password", "/operators/" + admin.opID + "/totp"} {
		if p := adm.post(path, url.Values{"csrf": {csrf}, "password": {newPW}}); p.status != http.StatusBadRequest {
			t.Errorf("admin resets itself at %s: %d, want 400", path, p.status)
		}
	}
	if p := adm.post("/operators/"+e.helpdesk.opID+"/password", url.Values{"csrf": {csrf}, "password": {"short"}}); p.status != http.StatusBadRequest {
		t.Errorf("weak password: %d, want 400", p.status)
	}
	if p := adm.post("/operators/nobody/password", url.Values{"csrf": {csrf}, "password": {newPW}}); p.status != http.StatusNotFound {
		t.Errorf("unknown operator: %d, want 404", p.status)
	}

	// Password. The helpdesk operator's open session ends with it.
	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	if p := hd.get("/fleet"); p.status != http.StatusOK {
		t.Fatalf("helpdesk before the reset: %d", p.status)
	}
	if p := adm.post("/operators/"+e.helpdesk.opID+"/password", url.Values{"csrf": {csrf}, "password": {newPW}}); p.status != http.StatusSeeOther {
		t.Fatalf("reset password: %d\n%s", p.status, p.body)
	}
	if p := hd.get("/fleet"); p.status == http.StatusOK {
		t.Error("the helpdesk operator's session outlived its password reset")
	}
	b := e.browser(t, "")
	e.h.Clock.Advance(30 * time.Second)
	if p := b.signInWith(e.helpdesk.login, password, e.code(t, e.helpdesk)); p.status == http.StatusSeeOther {
		t.Error("the old password still works")
	}
	e.h.Clock.Advance(30 * time.Second)
	if p := b.signInWith(e.helpdesk.login, newPW, e.code(t, e.helpdesk)); p.status != http.StatusSeeOther || p.loc != "/fleet" {
		t.Errorf("the new password does not work: %d %q", p.status, p.loc)
	}
	if rs := e.auditFor(t, admin.opID, "operator.password-reset", e.helpdesk.opID); len(rs) != 1 {
		t.Errorf("operator.password-reset records: %v", rs)
	}

	// TOTP.
	p := adm.post("/operators/"+e.officer.opID+"/totp", url.Values{"csrf": {csrf}})
	m := totpSecRE.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil || !strings.Contains(p.body, `id="totp-qr"`) || !strings.Contains(p.body, "otpauth://") {
		t.Fatalf("reset TOTP: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "[console.") || !strings.Contains(p.body, "TOTP の再登録") {
		t.Error("the TOTP reset page (ja) misses a message")
	}
	old := e.officer
	fresh := old
	fresh.totp = auth.Secret(m[1])
	e.h.Clock.Advance(30 * time.Second)
	if p := b.signInWith(old.login, password, e.code(t, old)); p.status == http.StatusSeeOther {
		t.Error("the old TOTP secret still works")
	}
	e.h.Clock.Advance(30 * time.Second)
	if p := b.signInWith(fresh.login, password, e.code(t, fresh)); p.status != http.StatusSeeOther {
		t.Errorf("the new TOTP secret does not work: %d", p.status)
	}
	for _, r := range e.auditActions(t) {
		if strings.Contains(r.Detail, m[1]) || strings.Contains(r.Detail, newPW) {
			t.Errorf("audit record %d holds a secret: %q", r.Seq, r.Detail)
		}
	}
	if rs := e.auditFor(t, admin.opID, "operator.totp-reset", e.officer.opID); len(rs) != 1 {
		t.Errorf("operator.totp-reset records: %v", rs)
	}
	if strings.Contains(adm.get("/operators").body, m[1]) {
		t.Error("the operators page shows the new secret again")
	}
}
