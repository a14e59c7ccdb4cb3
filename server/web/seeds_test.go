package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestOperatorSeedsSealed (issue 14 item 8): an operator's console TOTP
// seed is stored sealed (the database holds no seed in clear), sign-in
// opens it; a seed an older server stored in clear is sealed at the next
// start, audited, and keeps working.
func TestOperatorSeedsSealed(t *testing.T) {
	dir := t.TempDir()
	h := servertest.Start(t, servertest.Options{Console: true, DataDir: dir})
	e := &env{h: h}
	e.officer = e.account(t, "officer-sato", "佐藤", auth.RoleOfficer)
	ctx := context.Background()
	l, _, err := h.Srv.Store().OperatorLogin(ctx, e.officer.login)
	if err != nil {
		t.Fatal(err)
	}
	if !auth.IsSealed(l.TOTPSecret) || strings.Contains(l.TOTPSecret, e.officer.totp.Reveal()) {
		t.Fatalf("stored seed %q is not sealed", l.TOTPSecret)
	}
	e.browser(t, "").signIn(e.officer)

	// An older server's row: the seed in clear.
	l.TOTPSecret = e.officer.totp.Reveal()
	if err := h.Srv.Store().SetOperatorLogin(ctx, l); err != nil {
		t.Fatal(err)
	}
	h.Stop()
	h = servertest.Start(t, servertest.Options{Console: true, DataDir: dir})
	e.h = h
	l, _, err = h.Srv.Store().OperatorLogin(ctx, e.officer.login)
	if err != nil || !auth.IsSealed(l.TOTPSecret) {
		t.Fatalf("after restart the seed is %q (%v)", l.TOTPSecret, err)
	}
	if !e.hasAudit(t, "system", "operator.seed-sealed", e.officer.opID) {
		t.Error("sealing is not audited")
	}
	h.Clock.Advance(10 * time.Minute)
	e.browser(t, "").signIn(e.officer)
}
