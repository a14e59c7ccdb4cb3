package web_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestEvidenceChanges: the evidence report lists each policy change,
// exception and revocation of the period with who, when and why — not only
// counts — and names actions in the reader's language.
func TestEvidenceChanges(t *testing.T) {
	e := start(t)
	ts := e.terminals(t)
	b := e.browser(t, "ja")
	b.signIn(e.officer)
	d := b.get("/devices/" + ts.healthy.ID)
	if p := b.post("/devices/"+ts.healthy.ID+"/revoke", url.Values{"csrf": {csrfOf(t, d)}, "reason": {"盗難届 No.42"}}); p.status != 303 {
		t.Fatalf("revoke: %d\n%s", p.status, p.body)
	}
	p := b.get("/evidence/report?" + e.period())
	if p.status != 200 {
		t.Fatalf("report: %d", p.status)
	}
	i := strings.Index(p.body, `id="changes"`)
	if i < 0 {
		t.Fatalf("no list of changes:\n%s", p.body)
	}
	changes := p.body[i:]
	changes = changes[:strings.Index(changes, "</table>")]
	if !regexp.MustCompile(`端末の失効</td><td><code>[^<]*`+ts.healthy.ID+`</code></td><td>盗難届 No.42</td>`).MatchString(changes) ||
		!strings.Contains(changes, "佐藤") {
		t.Errorf("the revocation is not listed with who and why:\n%s", changes)
	}
	if strings.Contains(changes, "サインイン") {
		t.Error("sign-ins are listed among the changes")
	}
}
