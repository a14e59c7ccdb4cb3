package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDeviceList: the device list (端末一覧) through the real server: every
// terminal, each filter the fleet page links to, the CSV export (audited,
// formula-safe), and hostile or malformed queries refused with 400.
func TestDeviceList(t *testing.T) {
	e := start(t)
	ts := e.terminals(t)
	hostile := e.device(t, "=cmd|' /C calc'!A0", healthy())
	b := e.browser(t, "ja")
	b.signIn(e.helpdesk)

	has := func(path string, want, notWant []string) page {
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
				t.Errorf("GET %s shows %q: %s", path, w, p.body[max(0, strings.Index(p.body, w)-150):strings.Index(p.body, w)+50])
			}
		}
		return p
	}
	all := []string{"zeimu-pc-01", "shimin-pc-02", "shimin-pc-03"}
	has("/devices", append(all, "全 4 台中 1〜4 台目", "エージェント自己診断"), nil)
	has("/devices?state=noncompliant", []string{"zeimu-pc-01", "税務課"}, []string{"shimin-pc-02", "shimin-pc-03"})
	has("/devices?state=offline", []string{"shimin-pc-03", "分間報告がありません"}, []string{"zeimu-pc-01", "shimin-pc-02"})
	has("/devices?group="+url.QueryEscape("市民課"), []string{"shimin-pc-02", "shimin-pc-03"}, []string{"zeimu-pc-01"})
	has("/devices?group=-", []string{"calc"}, all)
	has("/devices?control=agent", []string{"zeimu-pc-01"}, []string{"shimin-pc-02"})
	has("/devices?os=linux&agent=test", all, nil)
	has("/devices?os=windows", []string{"devices-none"}, all)
	p := has("/devices?sort=last_seen&desc=1", all, nil)
	if i, j := strings.Index(p.body, "shimin-pc-02"), strings.Index(p.body, "shimin-pc-03"); i < 0 || j < i {
		t.Errorf("newest report first: shimin-pc-02 at %d, shimin-pc-03 at %d", i, j)
	}
	// The fleet page's counts and group rows link to these lists.
	has("/fleet", []string{`href="/devices?state=noncompliant"`, `href="/devices?group=%e5%b8%82%e6%b0%91%e8%aa%b2&amp;state=offline"`}, nil)

	// The page's own links (CSV, pager) carry their queries as queries,
	// not as one escaped key ("format%3dcsv" before this was fixed).
	has("/devices?state=noncompliant", []string{`href="/devices?format=csv&amp;state=noncompliant"`}, []string{"devices?format%3d"})

	// CSV: every device, formula-safe, audited.
	p = b.get("/devices?format=csv")
	if p.status != http.StatusOK || !strings.HasPrefix(p.body, "\ufeff") || !strings.Contains(p.body, "zeimu-pc-01") ||
		!strings.Contains(p.body, "'=cmd") || strings.Contains(p.body, "\n=cmd") || strings.Count(p.body, "\r\n") != 5 {
		t.Errorf("CSV export (%d):\n%s", p.status, p.body)
	}
	if !e.hasAudit(t, e.helpdesk.opID, "devices.export", "csv") {
		t.Error("the CSV export is not audited")
	}
	_ = hostile
	_ = ts

	for _, q := range []string{
		"state=bogus", "sort=facts", "desc=yes", "page=0", "page=-1", "page=x", "page=99999999999",
		"group=" + strings.Repeat("x", 300), "os=%ff%fe", "control=" + strings.Repeat("a", 256),
	} {
		if p := b.get("/devices?" + q); p.status != http.StatusBadRequest {
			t.Errorf("GET /devices?%s: %d, want 400", q, p.status)
		}
	}
	// Keyset: after a terminal, the ones after it in the order; a cursor
	// whose terminal is unknown is the first page; both cursors at once
	// are refused.
	has("/devices?after="+ts.failing.ID+"&page=2", nil, []string{"zeimu-pc-01", "shimin-pc-02", "shimin-pc-03"})
	has("/devices?sort=hostname&desc=1&after="+ts.failing.ID+"&page=2", []string{"shimin-pc-03", "shimin-pc-02"}, []string{"zeimu-pc-01"})
	has("/devices?after=no-such-terminal&page=7", append(all, "全 4 台中 1〜4 台目"), nil)
	for _, q := range []string{"after=a&before=b", "after=" + strings.Repeat("x", 300)} {
		if p := b.get("/devices?" + q); p.status != http.StatusBadRequest {
			t.Errorf("GET /devices?%s: %d, want 400", q, p.status)
		}
	}
	// A page past the end is empty, not an error.
	has("/devices?page=999", []string{"devices-none"}, all)

	// Signed out: to the sign-in form.
	if p := e.browser(t, "ja").get("/devices"); p.status != http.StatusSeeOther {
		t.Errorf("signed out: %d", p.status)
	}
}
