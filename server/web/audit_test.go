package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAuditPage: the officer reads the whole audit log with its chain
// verified, filters it by actor, action, terminal and day, and exports
// it; the helpdesk sees its own actions only; a cross-origin POST is
// refused with a translated page and audited like any refusal.
func TestAuditPage(t *testing.T) {
	e := start(t)
	ts := e.terminals(t)
	off := e.browser(t, "ja")
	off.signIn(e.officer)
	hd := e.browser(t, "ja")
	hd.signIn(e.helpdesk)

	// A refusal by role (helpdesk revoking) and a cross-origin POST.
	if p := hd.get("/devices/" + ts.failing.ID); p.status != http.StatusOK {
		t.Fatal(p.status)
	}
	if p := hd.post("/devices/"+ts.failing.ID+"/revoke", url.Values{"reason": {"x"}}); p.status != http.StatusForbidden {
		t.Errorf("helpdesk revoke: %d", p.status)
	}
	off.header.Set("Origin", "https://evil.example")
	off.header.Set("Sec-Fetch-Site", "cross-site")
	p := off.post("/devices/"+ts.failing.ID+"/revoke", url.Values{"reason": {"csrf"}})
	off.header.Del("Origin")
	off.header.Del("Sec-Fetch-Site")
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "別のサイトからの要求です") {
		t.Errorf("cross-origin POST: %d\n%s", p.status, p.body)
	}
	if !e.hasAudit(t, e.officer.opID, "console.denied", "POST /devices/"+ts.failing.ID+"/revoke") {
		t.Error("the cross-origin refusal is not audited")
	}

	has := func(b *browser, path string, want, notWant []string) {
		t.Helper()
		p := b.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, p.status, p.body)
		}
		for _, w := range want {
			if !strings.Contains(p.body, w) {
				t.Errorf("GET %s lacks %q", path, w)
			}
		}
		for _, w := range notWant {
			if strings.Contains(p.body, w) {
				t.Errorf("GET %s shows %q", path, w)
			}
		}
	}
	has(off, "/audit", []string{`id="audit-chain"`, "改ざんなし", "サインイン", "拒否", "佐藤", "鈴木", "cross-origin request refused"}, []string{`id="audit-own"`})
	has(off, "/audit?actor="+url.QueryEscape("鈴木"), []string{"鈴木", "role helpdesk"}, []string{"cross-origin request refused"})
	has(off, "/audit?action=console.denied", []string{"拒否"}, []string{">サインイン<"})
	has(off, "/audit?device=zeimu-pc-01", []string{"POST /devices/" + ts.failing.ID + "/revoke"}, []string{">サインイン<"})
	day := e.h.Clock.Now().In(time.FixedZone("JST", 9*3600)).Format("2006-01-02")
	has(off, "/audit?from="+day+"&to="+day, []string{"サインイン"}, nil)
	has(off, "/audit?from=2000-01-01&to=2000-01-02", []string{`id="audit-none"`}, nil)
	// The helpdesk: its own records only.
	has(hd, "/audit", []string{`id="audit-own"`, "鈴木", "role helpdesk"}, []string{"佐藤", "cross-origin request refused"})

	// CSV: formula-safe, the chain state last, the export audited.
	p = off.get("/audit?format=csv&action=console")
	if p.status != http.StatusOK || !strings.HasPrefix(p.body, "\ufeff") || !strings.Contains(p.body, "console.denied") || !strings.Contains(p.body, "改ざんなし") {
		t.Errorf("audit CSV (%d):\n%s", p.status, p.body)
	}
	if !e.hasAudit(t, e.officer.opID, "audit.export", "csv") {
		t.Error("the audit export is not audited")
	}
	for _, q := range []string{"from=yesterday", "to=2026-13-01", "actor=" + strings.Repeat("x", 300), "device=%ff"} {
		if p := off.get("/audit?" + q); p.status != http.StatusBadRequest {
			t.Errorf("GET /audit?%s: %d, want 400", q, p.status)
		}
	}
}
