package web_test

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// identifiers the console must never show to a Japanese reader as they
// are: control names, modes, roles, evidence keys and audit actions. A
// text that is one of them, starts with one and a colon (an evidence
// line) or names one in brackets fails TestJapaneseThroughout. Agent
// text (its English details and evidence values) and <code>/<pre> are
// not the console's words and are left out.
var identifiers = []string{
	"agent", "media", "login-mfa", "isolation",
	"enforce", "monitor", "MODE_ENFORCE", "MODE_MONITOR",
	"officer", "helpdesk", "admin",
	"clock_skew_ms", "module.expected_error", "module.expected_from", "dll.expected_error", "spool", "spool_backlog",
	"interfaces.unexpected", "routes.default", "ruleset", "pam_config", "sshd.config", "key_storage", "would_refuse",
	"compliance.change", "policy.set", "device.enroll", "device.revoke", "exception.create", "exception.revoke",
	"console.login", "console.denied", "console.logout", "ledger.import", "evidence.export", "devices.export",
	"incident.open", "incident.close", "token.create", "operator.create",
}

// untranslated lists the texts of page that show an identifier.
func untranslated(t *testing.T, body string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "code", "pre", "textarea", "script", "style", "title", "option":
				return
			}
		}
		if n.Type == html.TextNode {
			s := strings.TrimSpace(n.Data)
			for _, id := range identifiers {
				if s == id || strings.HasPrefix(s, id+":") || strings.HasPrefix(s, id+"：") ||
					strings.Contains(s, "("+id+")") || strings.Contains(s, "（"+id+"）") {
					bad = append(bad, id+" in "+strings.Join(strings.Fields(s), " "))
				}
			}
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch)
		}
	}
	walk(doc)
	return bad
}

// TestJapaneseThroughout opens every console page in Japanese, as the
// officer, with a fleet that has a failing, a healthy and an offline
// terminal, refusals, exports and a policy change in the audit log, and
// fails on any identifier shown untranslated.
func TestJapaneseThroughout(t *testing.T) {
	e := start(t)
	ts := e.terminals(t)
	b := e.browser(t, "ja")
	b.signIn(e.officer)
	hd := e.browser(t, "ja")
	hd.signIn(e.helpdesk)
	hd.get("/devices/" + ts.failing.ID)
	b.get("/devices?format=csv")
	for _, path := range []string{
		"/fleet", "/devices", "/devices/" + ts.failing.ID, "/devices/" + ts.offline.ID, "/devices/" + ts.healthy.ID,
		"/incidents", "/audit", "/policy", "/exceptions", "/ledger", "/search?q=shimin", "/mfa", "/evidence",
	} {
		p := b.get(path)
		if p.status != 200 {
			t.Errorf("GET %s: %d", path, p.status)
			continue
		}
		for _, s := range untranslated(t, p.body) {
			t.Errorf("GET %s (ja) shows an identifier: %s", path, s)
		}
	}
	// The helpdesk's own view too.
	for _, path := range []string{"/fleet", "/audit"} {
		for _, s := range untranslated(t, hd.get(path).body) {
			t.Errorf("GET %s (ja, helpdesk) shows an identifier: %s", path, s)
		}
	}
	// The check itself finds what it must.
	if got := untranslated(t, `<p>agent</p><li>clock_skew_ms: 30</li><span>佐藤 (officer)</span><code>agent</code>`); len(got) != 3 {
		t.Errorf("the check found %q, want agent, clock_skew_ms and officer", got)
	}
}
