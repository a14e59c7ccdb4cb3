package web

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/server/auth"
)

// Cross-origin refusals are audited, but a flood of them must not fill
// the log (issue #19): within one window (Config.CrossOriginWindow, a
// minute by default) the first refusal of each origin and request
// (method and path) is written at once, as before; the rest are counted,
// and each key's count is written as one row when the window closes (a
// timer), or at Close. Every refusal is in a row or in a count.

// maxRefusalKeys bounds the keys of one window; refusals beyond it share
// one key ("other origins"), so a flood of distinct origins costs a
// bounded map and one row more.
const maxRefusalKeys = 1000

type refusalKey struct{ origin, site, request string }

type refusalCount struct {
	actor       string // the first refusal's
	n           int    // refusals after the first
	first, last time.Time
}

type refusalAgg struct {
	window time.Duration
	now    func() time.Time
	write  func(ctx context.Context, actor, action, target, detail string) error

	mu    sync.Mutex
	keys  map[refusalKey]*refusalCount
	timer *time.Timer
}

// note counts one refusal; first reports whether it is the first of its
// key in the window (the caller then writes it as a row of its own).
// actor is asked for only then: a counted refusal costs no store read.
func (a *refusalAgg) note(k refusalKey) (key refusalKey, first bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.keys == nil {
		a.keys = map[refusalKey]*refusalCount{}
	}
	if _, ok := a.keys[k]; !ok && len(a.keys) >= maxRefusalKeys {
		k = refusalKey{origin: "(other origins)", request: "(other requests)"}
	}
	c, ok := a.keys[k]
	if !ok {
		a.keys[k] = &refusalCount{first: now, last: now}
		if a.timer == nil {
			// Real time: with a quiet flood the counts still land.
			a.timer = time.AfterFunc(a.window, func() { a.Flush(context.Background()) })
		}
		return k, true
	}
	c.n++
	c.last = now
	return k, false
}

// setActor names the first refusal's actor, for the count's row.
func (a *refusalAgg) setActor(k refusalKey, actor string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.keys[k]; ok {
		c.actor = actor
	}
}

// Flush ends the window: one row per key with refusals after its first.
func (a *refusalAgg) Flush(ctx context.Context) {
	a.mu.Lock()
	keys := a.keys
	a.keys = nil
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.mu.Unlock()
	for k, c := range keys {
		if c.n == 0 {
			continue
		}
		actor := c.actor
		if actor == "" {
			actor = "anonymous"
		}
		_ = a.write(ctx, actor, "console.denied", k.request, fmt.Sprintf("%s; count=%d more refused after the first (one row for all of them) from=%s to=%s",
			refusalDetail(k), c.n, c.first.UTC().Format(time.RFC3339), c.last.UTC().Format(time.RFC3339)))
	}
}

func refusalDetail(k refusalKey) string {
	d := "cross-origin request refused"
	if k.origin != "" {
		d += "; Origin " + k.origin
	}
	if k.site != "" {
		d += "; Sec-Fetch-Site " + k.site
	}
	return d
}

// crossOriginRefused answers a POST from another origin (or a browser's
// cross-site request) that http.CrossOriginProtection refused: audited as
// a refusal like a wrong CSRF token (the first of its origin and request
// in a window a row of its own, the rest counted: refusalAgg), answered
// with a translated page.
func (c *Console) crossOriginRefused(w http.ResponseWriter, r *http.Request) {
	c.n.denied.Add(1)
	k, first := c.refusals.note(refusalKey{origin: clipText(r.Header.Get("Origin"), 200), site: clipText(r.Header.Get("Sec-Fetch-Site"), 40),
		request: r.Method + " " + clipText(r.URL.Path, 200)})
	if first {
		actor := "anonymous"
		if ck, err := r.Cookie(sessionCookie); err == nil {
			if hash, err := auth.HashSessionID(auth.Secret(ck.Value)); err == nil {
				if _, o, err := c.st.Session(r.Context(), hash); err == nil {
					actor = o.ID
				}
			}
		}
		c.refusals.setActor(k, actor)
		_ = c.audit(r.Context(), actor, "console.denied", k.request, refusalDetail(k))
	}
	c.fail(w, r, http.StatusForbidden, nil, "console.err.cross-origin")
}
