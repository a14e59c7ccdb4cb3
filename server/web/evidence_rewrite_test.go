package web_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/auth"
)

// TestEvidenceReportRewriteDetected (issue 14 item 8): the console's
// evidence report verifies the server's signed checkpoints, not only the
// unkeyed chain. Rows of the audit log are rewritten straight in the real
// SQLite database and every hash from there recomputed as audit.Hash
// does, so the plain chain verifies; the report says the log is broken
// (the checkpoints no longer hold), in the page and in the CSV, before
// and after a new record (when the server also refuses to sign).
func TestEvidenceReportRewriteDetected(t *testing.T) {
	e := start(t)
	b := e.browser(t, "en")
	b.signIn(e.officer)
	for range 4 {
		e.h.Token(t, 1, 0)
	}
	result := regexp.MustCompile(`<td id="chain-result" class="(\w+)">([^<]*)</td>`)
	report := func() (class, text string) {
		t.Helper()
		p := b.get("/evidence/report?" + e.period())
		m := result.FindStringSubmatch(p.body)
		if p.status != 200 || m == nil {
			t.Fatalf("report: %d\n%s", p.status, p.body)
		}
		return m[1], m[2]
	}
	if class, text := report(); class != "ok" || !strings.Contains(text, "signed checkpoints verified") {
		t.Fatalf("intact log: %s %q", class, text)
	}

	ctx := context.Background()
	rs, err := e.h.Srv.Store().ListAudit(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(e.h.DataDir, "mamori.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var prev []byte
	var plain audit.Verifier
	for _, r := range rs {
		// Every enrolment token's record says something else now; the
		// whole chain is recomputed.
		if r.Action == "token.create" {
			r.Detail = "uses=1 note=rewritten"
		}
		r.PrevHash = prev
		r.Hash = audit.Hash(prev, r)
		if _, err := db.Exec("UPDATE audit SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?", r.Detail, r.PrevHash, r.Hash, r.Seq); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
		plain.Add(r)
	}
	if !plain.OK() {
		t.Fatalf("the recomputed unkeyed chain should verify: %s", plain.Problem())
	}
	class, text := report()
	if class != "bad" || !strings.Contains(text, "signed checkpoint broken") {
		t.Fatalf("rewritten log: %s %q", class, text)
	}
	if strings.Contains(text, "content changed") || strings.Contains(text, "link") {
		t.Errorf("only the checkpoints should fail: %q", text)
	}
	// A new record: the server refuses to sign over the rewrite; the
	// report is still made and still says so; the CSV too.
	e.h.Token(t, 1, 0)
	if class, text := report(); class != "bad" || !strings.Contains(text, "signed checkpoint broken") {
		t.Fatalf("rewritten log after a new record: %s %q", class, text)
	}
	csv := b.get("/evidence/export.csv?" + e.period())
	if csv.status != 200 || !strings.Contains(csv.body, "BROKEN: seq") {
		t.Fatalf("CSV of a rewritten log: %d\n%s", csv.status, csv.body[:min(len(csv.body), 600)])
	}

	// Japanese, for the officer who reads it.
	bj := e.browser(t, "ja")
	bj.signIn(e.account(t, "officer-ja", "高橋", auth.RoleOfficer))
	if p := bj.get("/evidence/report?" + e.period()); !strings.Contains(p.body, "破損あり") {
		t.Errorf("ja report of a rewritten log does not say 破損あり")
	}
}
