package web_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
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

// TestAuditPagePaging: the audit page reads the store a page at a time
// (newest first, an "older" link per page) and never the whole log for a
// view; the chain status covers every record, also after more are
// appended. The CSV has every matching record, oldest first.
func TestAuditPagePaging(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	st := e.h.Srv.Store()
	for i := range 450 {
		if _, err := st.AppendAudit(ctx, store.AuditRecord{At: e.h.Clock.Now(), Actor: "system", Action: "compliance.change",
			Target: fmt.Sprintf("dev-%03d", i), Detail: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	off := e.browser(t, "en")
	off.signIn(e.officer)
	rowsOf := func(body string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`<td class="num">(\d+)</td>`).FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	seen := map[string]bool{}
	path := "/audit?action=compliance.change"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		p := off.get(path)
		if p.status != http.StatusOK || !strings.Contains(p.body, "all ") {
			t.Fatalf("GET %s: %d\n%.3000s", path, p.status, p.body)
		}
		rows := rowsOf(p.body)
		if len(rows) > 200 {
			t.Fatalf("%d rows on one page", len(rows))
		}
		for _, r := range rows {
			if seen[r] {
				t.Fatalf("record %s on two pages (%s)", r, path)
			}
			seen[r] = true
		}
		path = ""
		if m := regexp.MustCompile(`href="(/audit\?[^"]+)" id="audit-older"`).FindStringSubmatch(p.body); m != nil {
			path = html.UnescapeString(m[1])
			if pages == 0 && !strings.Contains(p.body, `id="audit-older"`) {
				t.Error("no older link")
			}
		} else if pages == 0 {
			t.Fatal("the first page has no link to older records")
		}
		if pages > 0 && !strings.Contains(p.body, `id="audit-newest"`) {
			t.Error("an older page has no link to the newest")
		}
	}
	if len(seen) != 450 {
		t.Errorf("%d records over the pages, want 450", len(seen))
	}
	// More records: the status counts them (incremental verification).
	p := off.get("/audit")
	n1 := regexp.MustCompile(`all (\d+) records intact`).FindStringSubmatch(p.body)
	if _, err := st.AppendAudit(ctx, store.AuditRecord{At: e.h.Clock.Now(), Actor: "system", Action: "compliance.change", Target: "late"}); err != nil {
		t.Fatal(err)
	}
	p = off.get("/audit")
	n2 := regexp.MustCompile(`all (\d+) records intact`).FindStringSubmatch(p.body)
	if n1 == nil || n2 == nil || n1[1] == n2[1] {
		t.Errorf("the chain status does not follow the log: %v then %v", n1, n2)
	}
	// The CSV: every matching record, oldest first.
	p = off.get("/audit?format=csv&action=compliance.change")
	lines := strings.Split(strings.TrimSpace(p.body), "\r\n")
	var got []string
	for _, l := range lines[1 : len(lines)-1] {
		if strings.Contains(l, "compliance.change") {
			got = append(got, strings.SplitN(l, ",", 2)[0])
		}
	}
	if len(got) != 451 || !sortedInts(got) {
		t.Errorf("CSV: %d records (want 451), in order: %v", len(got), sortedInts(got))
	}
	for _, q := range []string{"before=x", "before=0", "before=-1", "actor=%00"} {
		if p := off.get("/audit?" + q); p.status != http.StatusBadRequest {
			t.Errorf("GET /audit?%s: %d, want 400", q, p.status)
		}
	}
	// The helpdesk asking for someone else's records gets none.
	hd := e.browser(t, "en")
	hd.signIn(e.helpdesk)
	if p := hd.get("/audit?actor=system"); p.status != http.StatusOK || len(rowsOf(p.body)) != 0 {
		t.Errorf("helpdesk sees others' records: %d, %d rows", p.status, len(rowsOf(p.body)))
	}
}

func sortedInts(xs []string) bool {
	prev := -1
	for _, x := range xs {
		n, err := strconv.Atoi(x)
		if err != nil || n <= prev {
			return false
		}
		prev = n
	}
	return true
}
