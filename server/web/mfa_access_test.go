package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// TestDeviceMFAUsers (issue #14 item 1): a device's page says whose login
// factors it receives, or why none — nobody by default, the users its
// scope and its own key name, hostile names escaped.
func TestDeviceMFAUsers(t *testing.T) {
	e := start(t)
	d := e.device(t, "pc-mfa", healthy())
	other := e.device(t, "pc-other", healthy())
	off := e.browser(t, "en")
	off.signIn(e.officer)
	page := func(id string) string {
		t.Helper()
		p := off.get("/devices/" + id)
		if p.status != http.StatusOK {
			t.Fatalf("device page: %d", p.status)
		}
		_, after, _ := strings.Cut(p.body, `id="device-mfa-users">`)
		v, _, _ := strings.Cut(after, "<")
		return v
	}
	if got := page(d.ID); !strings.Contains(got, "no user is named") {
		t.Fatalf("default: %q", got)
	}
	st := e.h.Srv.Store()
	cur, err := st.CurrentPolicy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Clone(cur)
	p.Controls[policy.ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR,
		Settings: map[string]string{"users": "tanaka", policy.DeviceUsersKey(d.ID): "sato"}}
	if _, err := st.SetPolicy(context.Background(), store.PolicyChange{Policy: p, Actor: "test", Reason: "who may log in where",
		At: e.h.Clock.Now()}, cur.Version); err != nil {
		t.Fatal(err)
	}
	if got := page(d.ID); got != "sato, tanaka" {
		t.Fatalf("with a per-terminal key: %q", got)
	}
	if got := page(other.ID); got != "tanaka" {
		t.Fatalf("another terminal: %q", got)
	}
}
