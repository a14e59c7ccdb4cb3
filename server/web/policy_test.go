package web_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Handler tests of issue 5's pages: policy editor, exceptions, asset
// ledger. Same real server as web_test.go.

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// hiddenFields reads the hidden inputs of the form with the given id.
func hiddenFields(t *testing.T, body, formID string) url.Values {
	t.Helper()
	i := strings.Index(body, `id="`+formID+`"`)
	if i < 0 {
		t.Fatalf("no form %s in:\n%s", formID, body)
	}
	form := body[i:]
	form = form[:strings.Index(form, "</form>")]
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(form, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func textareaOf(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<textarea id="policy-json"[^>]*>(.*?)</textarea>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no policy text area:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

func TestPolicyEditor(t *testing.T) {
	e := start(t)
	off := e.browser(t, "en")
	off.signIn(e.officer)
	p := off.get("/policy")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="policy-edit"`) {
		t.Fatalf("officer policy page: %d\n%s", p.status, p.body)
	}
	ed := off.get("/policy/json")
	doc := textareaOf(t, ed.body)
	edited := strings.Replace(doc, `"report_interval": "60s"`, `"report_interval": "30s"`, 1)
	edited = strings.Replace(edited, `"controls": {`, `"groups": {"市民課": {"controls": {"media": {"mode": "MODE_ENFORCE", "required": true, "settings": {"storage": "block"}}}}},
  "controls": {`, 1)
	if edited == doc {
		t.Fatalf("could not edit the document:\n%s", doc)
	}
	form := hiddenFields(t, ed.body, "policy-form")
	form.Set("policy", edited)

	// No reason: refused, nothing saved.
	if p := off.post("/policy/preview", form); p.status != http.StatusBadRequest {
		t.Errorf("preview without a reason: %d", p.status)
	}
	form.Set("reason", "市民課は USB 遮断 <b>")
	pv := off.post("/policy/preview", form)
	if pv.status != http.StatusOK || !regexp.MustCompile(`<span class="del">-\s+&#34;report_interval&#34;: &#34;60s&#34;`).MatchString(pv.body) ||
		!regexp.MustCompile(`<span class="add">&#43;\s+&#34;report_interval&#34;: &#34;30s&#34;`).MatchString(pv.body) || !strings.Contains(pv.body, "市民課") ||
		!strings.Contains(pv.body, "&lt;b&gt;") {
		t.Fatalf("preview: %d\n%s", pv.status, pv.body)
	}
	if cur, _ := e.h.Srv.Store().CurrentPolicy(context.Background()); cur.Version != 1 {
		t.Fatalf("preview saved version %d", cur.Version)
	}
	save := hiddenFields(t, pv.body, "policy-save-form")
	// Missing CSRF on the save form.
	noCSRF := url.Values{}
	for k, v := range save {
		if k != "csrf" {
			noCSRF[k] = v
		}
	}
	if p := off.post("/policy", noCSRF); p.status != http.StatusForbidden {
		t.Errorf("save without CSRF: %d", p.status)
	}
	sv := off.post("/policy", save)
	if sv.status != http.StatusSeeOther || sv.loc != "/policy#v2" {
		t.Fatalf("save: %d %q\n%s", sv.status, sv.loc, sv.body)
	}
	cur, err := e.h.Srv.Store().CurrentPolicy(context.Background())
	if err != nil || cur.Version != 2 || cur.Groups["市民課"].GetControls()["media"].GetSettings()["storage"] != "block" {
		t.Fatalf("saved policy: %v %v", cur, err)
	}
	if !e.hasAudit(t, e.officer.opID, "policy.set", "2") {
		t.Error("policy.set not audited")
	}
	// The same confirm form again: the version moved on, refused.
	if p := off.post("/policy", save); p.status != http.StatusBadRequest || !strings.Contains(p.body, "changed while you edited") {
		t.Errorf("stale save: %d\n%s", p.status, p.body)
	}
	// History shows version 2 with who, why and the diff; the group table.
	h := off.get("/policy")
	for _, want := range []string{`id="v2"`, "佐藤", "市民課は USB 遮断 &lt;b&gt;", `<span class="add">`, "Group 市民課", "storage: block"} {
		if !strings.Contains(h.body, want) {
			t.Errorf("policy page lacks %q", want)
		}
	}
	// Invalid documents are refused with the reason shown.
	for name, bad := range map[string]string{
		"not JSON":                 "{",
		"hand-made exceptions":     strings.Replace(doc, `"controls": {`, `"controls": {"media": {"mode": "MODE_ENFORCE", "settings": {"exceptions": "x"}},`, 1),
		"group interval too short": strings.Replace(doc, `"controls": {`, `"groups": {"x": {"report_interval": "1s"}}, "controls": {`, 1),
		"too large":                strings.Repeat(" ", 49<<10),
	} {
		f := url.Values{"csrf": {csrfOf(t, h)}, "expected": {"2"}, "policy": {bad}, "reason": {"x"}}
		if p := off.post("/policy/preview", f); p.status != http.StatusBadRequest && p.status != http.StatusForbidden {
			t.Errorf("%s: %d", name, p.status)
		}
	}

	// Helpdesk reads, never edits: not the link, not the URL, not the forms.
	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	hp := hd.get("/policy")
	if hp.status != http.StatusOK || strings.Contains(hp.body, `id="policy-edit"`) {
		t.Errorf("helpdesk policy page: %d", hp.status)
	}
	for _, path := range []string{"/policy/edit", "/policy/json"} {
		if p := hd.get(path); p.status != http.StatusForbidden {
			t.Errorf("helpdesk %s: %d", path, p.status)
		}
	}
	tok := csrfOf(t, hp)
	save.Set("csrf", tok)
	save.Set("expected", "2")
	for _, path := range []string{"/policy/preview", "/policy"} {
		if p := hd.post(path, save); p.status != http.StatusForbidden {
			t.Errorf("helpdesk POST %s: %d", path, p.status)
		}
	}
	if cur, _ := e.h.Srv.Store().CurrentPolicy(context.Background()); cur.Version != 2 {
		t.Errorf("helpdesk changed the policy: version %d", cur.Version)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "console.denied", "POST /policy") {
		t.Error("the refused save is not audited")
	}
}

func TestExceptionPages(t *testing.T) {
	e := start(t)
	d := e.device(t, hostile, healthy(), &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media",
		Kind: "media_exception_used", Attributes: map[string]string{"exception_id": "x", "serial": hostile, "user": hostile, "model": hostile}},
		&mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: "media_file_written",
			Attributes: map[string]string{"exception_id": "x", "path": "/住民/" + hostile + ".csv", "size_bytes": "5",
				"sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "user": "tanaka", "process": "cp"}})
	plain := e.device(t, "pc-plain", healthy())
	off := e.browser(t, "")
	off.signIn(e.officer)
	ex := off.get("/exceptions")
	if ex.status != http.StatusOK || !strings.Contains(ex.body, `id="exception-form"`) {
		t.Fatalf("officer exceptions page: %d", ex.status)
	}
	expires := e.h.Clock.Now().Add(48 * time.Hour).In(time.FixedZone("JST", 9*3600)).Format("2006-01-02T15:04")
	form := url.Values{"csrf": {csrfOf(t, ex)}, "usb": {"0781:5581:<script>alert(1)</script>"}, "device": {d.ID},
		"user": {"tanaka"}, "reason": {"議会資料 " + hostile}, "expires": {expires}}
	// Invalid input is refused with the form kept.
	for name, mod := range map[string]func(v url.Values){
		"no reason":    func(v url.Values) { v.Set("reason", "") },
		"wildcard":     func(v url.Values) { v.Set("usb", "0781:5581:*") },
		"both targets": func(v url.Values) { v.Set("group", "市民課") },
		"no target":    func(v url.Values) { v.Set("device", "") },
		"past":         func(v url.Values) { v.Set("expires", "2020-01-01T00:00") },
		"bad date":     func(v url.Values) { v.Set("expires", "tomorrow") },
		"bad user":     func(v url.Values) { v.Set("user", "<script>") },
		"unknown host": func(v url.Values) { v.Set("device", "no-such-pc") },
	} {
		f := url.Values{}
		for k, vs := range form {
			f[k] = append([]string(nil), vs...)
		}
		mod(f)
		if p := off.post("/exceptions", f); p.status != http.StatusBadRequest {
			t.Errorf("%s: %d", name, p.status)
		}
	}
	noCSRF := url.Values{}
	for k, v := range form {
		if k != "csrf" {
			noCSRF[k] = v
		}
	}
	if p := off.post("/exceptions", noCSRF); p.status != http.StatusForbidden {
		t.Errorf("create without CSRF: %d", p.status)
	}
	// Helpdesk: reads, no form; refused by form POST with its own token.
	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	hp := hd.get("/exceptions")
	if hp.status != http.StatusOK || strings.Contains(hp.body, `id="exception-form"`) {
		t.Errorf("helpdesk exceptions page: %d", hp.status)
	}
	hf := url.Values{}
	for k, v := range form {
		hf[k] = v
	}
	hf.Set("csrf", csrfOf(t, hp))
	if p := hd.post("/exceptions", hf); p.status != http.StatusForbidden {
		t.Errorf("helpdesk create: %d", p.status)
	}
	if es, _ := e.h.Srv.Store().ListExceptions(context.Background(), store.ExceptionFilter{}); len(es) != 0 {
		t.Fatalf("%d exceptions stored by refused requests", len(es))
	}

	p := off.post("/exceptions", form)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, "/exceptions#x-") {
		t.Fatalf("officer create: %d %q\n%s", p.status, p.loc, p.body)
	}
	id := strings.TrimPrefix(p.loc, "/exceptions#x-")
	if !e.hasAudit(t, e.officer.opID, "exception.create", id) {
		t.Error("exception.create not audited")
	}
	// A group exception too.
	gf := url.Values{}
	for k, v := range form {
		gf[k] = v
	}
	gf.Set("device", "")
	gf.Set("group", "市民課")
	gf.Set("usb", "0781:5581:GROUPSERIAL")
	if p := off.post("/exceptions", gf); p.status != http.StatusSeeOther {
		t.Fatalf("group exception: %d", p.status)
	}
	// Hostile text escaped on every page that shows it.
	for _, path := range []string{"/exceptions", "/devices/" + d.ID} {
		p := off.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", path, p.status)
		}
		for _, raw := range []string{"<script>", "<img", "onerror=alert("} {
			if strings.Contains(strings.ReplaceAll(p.body, "&lt;img src=x onerror=alert(", ""), raw) {
				t.Errorf("%s: raw %q in the page", path, raw)
			}
		}
		if !strings.Contains(p.body, "0781:5581:&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the exception is not shown (escaped)", path)
		}
	}
	dp := off.get("/devices/" + d.ID)
	if !strings.Contains(dp.body, `id="exception-uses"`) || !strings.Contains(dp.body, "exception_id: x") {
		t.Errorf("device page without the exception's uses:\n%s", dp.body)
	}
	// What left under the exception: each file with its path and hash.
	if !strings.Contains(dp.body, `id="exception-files"`) || !strings.Contains(dp.body, "sha256: 2cf24dba5fb0a30e") ||
		!strings.Contains(dp.body, "path: /住民/&lt;script&gt;") {
		t.Errorf("device page without the files written under the exception:\n%s", dp.body)
	}
	if pp := off.get("/devices/" + plain.ID); strings.Contains(pp.body, "&lt;script&gt;alert(1)") {
		t.Error("another terminal's exception on pc-plain's page")
	}
	// Revoke: helpdesk refused, officer needs a reason, then it is revoked.
	rf := url.Values{"csrf": {csrfOf(t, hp)}, "reason": {"x"}}
	if p := hd.post("/exceptions/"+id+"/revoke", rf); p.status != http.StatusForbidden {
		t.Errorf("helpdesk revoke: %d", p.status)
	}
	ex = off.get("/exceptions")
	if p := off.post("/exceptions/"+id+"/revoke", url.Values{"csrf": {csrfOf(t, ex)}}); p.status != http.StatusBadRequest {
		t.Errorf("revoke without reason: %d", p.status)
	}
	if p := off.post("/exceptions/"+id+"/revoke", url.Values{"reason": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("revoke without CSRF: %d", p.status)
	}
	if p := off.post("/exceptions/"+id+"/revoke", url.Values{"csrf": {csrfOf(t, ex)}, "reason": {"用件終了"}}); p.status != http.StatusSeeOther {
		t.Fatalf("officer revoke: %d", p.status)
	}
	if p := off.post("/exceptions/"+id+"/revoke", url.Values{"csrf": {csrfOf(t, ex)}, "reason": {"again"}}); p.status != http.StatusConflict {
		t.Errorf("revoke twice: %d", p.status)
	}
	if !e.hasAudit(t, e.officer.opID, "exception.revoke", id) {
		t.Error("exception.revoke not audited")
	}
	if p := off.get("/exceptions"); !strings.Contains(p.body, `id="exceptions-inactive"`) || !strings.Contains(p.body, "用件終了") {
		t.Error("the revoked exception is not listed as such")
	}
}

// postFile sends a multipart form with one file, as a browser does.
func (b *browser) postFile(path string, fields url.Values, name string, content []byte) page {
	b.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.e.h.ConsoleURL+path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(raw), loc: resp.Header.Get("Location")}
}

func TestLedgerPage(t *testing.T) {
	e := start(t)
	e.device(t, "pc-001", healthy())
	e.device(t, hostile, healthy())
	off := e.browser(t, "")
	off.signIn(e.officer)
	lp := off.get("/ledger")
	if lp.status != http.StatusOK || !strings.Contains(lp.body, `id="ledger-form"`) {
		t.Fatalf("officer ledger page: %d", lp.status)
	}
	good := []byte("\xef\xbb\xbf資産番号,ホスト名,製造番号,所属,設置場所,備考\nA-001,pc-001,SN1,市民課,本庁舎2F,<script>x</script>\nA-002,pc-002,,税務課,本庁舎3F,\n")
	bad := []byte("資産番号,ホスト名\nA-1,pc-1\n,pc-2\nA-1,pc-3\n")
	fields := url.Values{"csrf": {csrfOf(t, lp)}, "reason": {"2026年度"}}
	p := off.postFile("/ledger", fields, "bad.csv", bad)
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="ledger-problems"`) ||
		!strings.Contains(p.body, "3 行目") || !strings.Contains(p.body, "4 行目") {
		t.Fatalf("bad ledger: %d\n%s", p.status, p.body)
	}
	if l, _ := e.h.Srv.Store().Ledger(context.Background()); len(l.Entries) != 0 {
		t.Fatal("a refused file was half-imported")
	}
	if p := off.postFile("/ledger", url.Values{"reason": {"x"}}, "l.csv", good); p.status != http.StatusForbidden {
		t.Errorf("import without CSRF: %d", p.status)
	}
	if p := off.postFile("/ledger", fields, "big.csv", bytes.Repeat([]byte("x"), 3<<20)); p.status != http.StatusForbidden && p.status != http.StatusBadRequest {
		t.Errorf("oversized upload: %d", p.status)
	}
	hd := e.browser(t, "")
	hd.signIn(e.helpdesk)
	hp := hd.get("/ledger")
	if hp.status != http.StatusOK || strings.Contains(hp.body, `id="ledger-form"`) {
		t.Errorf("helpdesk ledger page: %d", hp.status)
	}
	if p := hd.postFile("/ledger", url.Values{"csrf": {csrfOf(t, hp)}, "reason": {"x"}}, "l.csv", good); p.status != http.StatusForbidden {
		t.Errorf("helpdesk import: %d", p.status)
	}
	if p := off.postFile("/ledger", fields, "ledger.csv", good); p.status != http.StatusSeeOther {
		t.Fatalf("import: %d\n%s", p.status, p.body)
	}
	if !e.hasAudit(t, e.officer.opID, "ledger.import", "ledger") {
		t.Error("ledger.import not audited")
	}
	lp = hd.get("/ledger")
	for _, want := range []string{"A-001", "本庁舎2F", "&lt;script&gt;x&lt;/script&gt;", "登録済み", "未登録", "台帳にない", "&lt;script&gt;alert"} {
		if !strings.Contains(lp.body, want) {
			t.Errorf("ledger page lacks %q", want)
		}
	}
	if strings.Contains(lp.body, "<script>") {
		t.Error("raw <script> on the ledger page")
	}
}

// Every new page, in both languages, with no message missing.
func TestNewPagesLanguages(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-lang", healthy())
	for _, l := range []struct{ accept, want string }{{"", "例外措置"}, {"en", "Exceptions"}} {
		b := e.browser(t, l.accept)
		b.signIn(e.officer)
		p := b.get("/policy/json")
		f := hiddenFields(t, p.body, "policy-form")
		f.Set("policy", strings.Replace(textareaOf(t, p.body), `"60s"`, `"30s"`, 1))
		f.Set("reason", "r")
		for path, page := range map[string]page{
			"/policy": b.get("/policy"), "/policy/json": p, "/policy/edit": b.get("/policy/edit"), "/policy/preview": b.post("/policy/preview", f),
			"/exceptions": b.get("/exceptions"), "/ledger": b.get("/ledger"), "/devices/" + d.ID: b.get("/devices/" + d.ID),
		} {
			if page.status != http.StatusOK {
				t.Errorf("%s %s: %d", l.accept, path, page.status)
			}
			if strings.Contains(page.body, "[console.") {
				t.Errorf("%s %s: a message is missing from the catalog", l.accept, path)
			}
			if !strings.Contains(page.body, l.want) {
				t.Errorf("%s %s: no %q in the navigation", l.accept, path, l.want)
			}
		}
	}
}

// A ledger larger than one page: every count is complete, the rows that
// need a person come first, at most ledgerRowsShown are rendered with a
// note of how many are not, and a count filters to its state.
func TestLedgerPageLarge(t *testing.T) {
	e := start(t)
	e.device(t, "pc-enrolled", healthy())
	var csv bytes.Buffer
	csv.WriteString("資産番号,ホスト名\nA-0000,pc-enrolled\n")
	for i := 1; i <= 600; i++ {
		fmt.Fprintf(&csv, "A-%04d,pc-never-%04d\n", i, i)
	}
	off := e.browser(t, "en")
	off.signIn(e.officer)
	lp := off.get("/ledger")
	if p := off.postFile("/ledger", url.Values{"csrf": {csrfOf(t, lp)}, "reason": {"r"}}, "l.csv", csv.Bytes()); p.status != http.StatusSeeOther {
		t.Fatalf("import: %d\n%s", p.status, p.body)
	}
	rows := func(body string) int { return strings.Count(body, "<tr class=") }
	all := off.get("/ledger")
	if n := rows(all.body); n != 500 {
		t.Errorf("%d rows rendered, want 500", n)
	}
	for _, want := range []string{`<span class="n">600</span> never enrolled`, `<span class="n">1</span> enrolled`, "101 more rows not shown", `href="/ledger?state=never_enrolled"`} {
		if !strings.Contains(all.body, want) {
			t.Errorf("ledger page lacks %q", want)
		}
	}
	if strings.Contains(all.body, "A-0000") {
		t.Error("an enrolled row is shown before the rows that need a person")
	}
	enrolled := off.get("/ledger?state=enrolled")
	if n := rows(enrolled.body); n != 1 || !strings.Contains(enrolled.body, "A-0000") || strings.Contains(enrolled.body, "more rows not shown") ||
		!strings.Contains(enrolled.body, `aria-current="page"`) {
		t.Errorf("enrolled only: %d rows\n%s", n, enrolled.body)
	}
	if n := rows(off.get("/ledger?state=<script>").body); n != 500 {
		t.Errorf("an unknown state filters: %d rows", n)
	}
}
