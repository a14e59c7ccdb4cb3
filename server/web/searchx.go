package web

import (
	"net/http"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/store"
)

// Wider search: besides hostnames, user names seen in events (logged-in
// and MFA users), device serial numbers (facts) and USB serials (media
// events). Terms are indexed by the incident watcher
// (server/incident), so a term is found within one watcher interval of
// its report; each search is one range scan of the search_terms primary
// key, bounded by searchLimit.

// searchKinds are the choices of the search form, hostname first.
var searchKinds = []struct {
	Value string
	ID    i18n.ID
}{
	{"hostname", "console.search.kind.hostname"},
	{store.TermUser, "console.search.kind.user"},
	{store.TermSerial, "console.search.kind.serial"},
	{store.TermUSB, "console.search.kind.usb"},
}

type kindOpt struct {
	Value, Name string
	Selected    bool
}

type termRow struct {
	Term, DeviceID, Hostname string
	LastAt                   time.Time
}

func kindOpts(p *i18n.Printer, kind string) ([]kindOpt, bool) {
	var out []kindOpt
	valid := false
	for _, k := range searchKinds {
		out = append(out, kindOpt{Value: k.Value, Name: p.Sprintf(k.ID), Selected: k.Value == kind})
		valid = valid || k.Value == kind
	}
	return out, valid
}

// searchTerms answers a search of a kind other than hostname.
func (c *Console) searchTerms(w http.ResponseWriter, r *http.Request, op *operator, v searchView) {
	p := i18n.NewPrinter(lang(r))
	if v.Q != "" {
		hits, err := c.st.SearchTerms(r.Context(), v.Kind, v.Q, searchLimit)
		if err != nil {
			c.internal(w, r, op, err)
			return
		}
		for _, h := range hits {
			v.Hits = append(v.Hits, termRow{Term: visible(h.Term), DeviceID: h.DeviceID, Hostname: visible(h.Hostname), LastAt: h.LastAt})
		}
		v.Searched = true
	}
	c.render(w, r, http.StatusOK, "search", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}
