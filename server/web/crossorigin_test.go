package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/web"
)

// TestCrossOriginFlood: a flood of cross-origin POSTs through the real
// server (TLS) is answered 403 every time, but writes one audit row per
// origin and request at once and one row with the count of the rest at
// shutdown; the counts add up to every refusal sent, none lost.
func TestCrossOriginFlood(t *testing.T) {
	dir := t.TempDir()
	opts := servertest.Options{Console: true, DataDir: dir, ConsoleConfig: func(c *web.Config) { c.CrossOriginWindow = time.Hour }}
	e := &env{h: servertest.Start(t, opts)}
	before := len(e.auditActions(t))
	floods := []struct {
		origin, path string
		n            int
	}{
		{"https://evil.example", "/policy", 150},
		{"https://evil.example", "/devices/x/revoke", 40},
		{"https://other.example", "/policy", 25},
	}
	sent := 0
	var wg sync.WaitGroup
	for _, f := range floods {
		sent += f.n
		for range 2 { // two clients per flood, at once
			wg.Go(func() {
				b := e.browser(t, "ja")
				b.header.Set("Origin", f.origin)
				b.header.Set("Sec-Fetch-Site", "cross-site")
				for range f.n / 2 {
					if p := b.post(f.path, url.Values{"x": {"1"}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "別のサイトからの要求です") {
						t.Errorf("cross-origin POST %s: %d", f.path, p.status)
						return
					}
				}
			})
		}
		if f.n%2 == 1 {
			sent--
		}
	}
	wg.Wait()
	denied := func(rs []store.AuditRecord) []store.AuditRecord {
		var out []store.AuditRecord
		for _, r := range rs {
			if r.Action == "console.denied" {
				out = append(out, r)
			}
		}
		return out
	}
	rows := denied(e.auditActions(t)[before:])
	if len(rows) != len(floods) {
		t.Fatalf("during the flood: %d rows, want one per origin and request (%d)", len(rows), len(floods))
	}
	// Shutdown writes the counts; a server on the same data reads them.
	e.h.Stop()
	e2 := &env{h: servertest.Start(t, opts)}
	rows = denied(e2.auditActions(t)[before:])
	re := regexp.MustCompile(`count=(\d+) more`)
	total, counts := 0, 0
	for _, r := range rows {
		total++
		if m := re.FindStringSubmatch(r.Detail); m != nil {
			n, _ := strconv.Atoi(m[1])
			total += n - 1
			counts++
		}
	}
	if len(rows) != 2*len(floods) || counts != len(floods) {
		t.Errorf("after shutdown: %d rows (%d with counts), want %d and %d:\n%v", len(rows), counts, 2*len(floods), len(floods), rows)
	}
	if total != sent {
		t.Errorf("the rows stand for %d refusals, %d were sent", total, sent)
	}
}
