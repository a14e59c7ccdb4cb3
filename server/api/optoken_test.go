package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// TestOperatorTokenExpiry (issue 14 item 7), through the real server's
// AdminService: the first admin's token lasts a day, an operator's 90
// days; a token from before expiry existed is refused until the next
// start gives it 30 days, audited.
func TestOperatorTokenExpiry(t *testing.T) {
	dir := t.TempDir()
	h := servertest.Start(t, servertest.Options{DataDir: dir})
	ctx := context.Background()
	works := func(tok string) error {
		_, err := h.Admin(t, tok).FleetSummary(ctx, &mamoriv1.FleetSummaryRequest{})
		return err
	}
	expired := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("%s: %v, want Unauthenticated: expired", what, err)
		}
	}
	if err := works(h.Srv.Boot.AdminToken.Reveal()); err != nil {
		t.Fatalf("bootstrap token: %v", err)
	}
	helpdesk := h.Operator(t, "ヘルプ", auth.RoleHelpdesk)
	h.Clock.Advance(auth.BootstrapTokenTTL)
	expired("bootstrap token after 24 h", works(h.Srv.Boot.AdminToken.Reveal()))
	if err := works(helpdesk); err != nil {
		t.Fatalf("operator token after a day: %v", err)
	}
	h.Clock.Advance(auth.DefaultOperatorTokenTTL - auth.BootstrapTokenTTL - time.Second)
	if err := works(helpdesk); err != nil {
		t.Fatalf("operator token a second before 90 days: %v", err)
	}
	h.Clock.Advance(time.Second)
	expired("operator token after 90 days", works(helpdesk))

	// A row as an older server wrote it: no expiry.
	tok := auth.NewToken(auth.OperatorTokenPrefix)
	if err := h.Srv.Store().CreateOperator(ctx, store.Operator{ID: "op-legacy", Name: "legacy", Role: "officer",
		TokenHash: auth.HashToken(tok.Reveal()), CreatedAt: h.Clock.Now()}); err != nil {
		t.Fatal(err)
	}
	expired("token without expiry", works(tok.Reveal()))
	h.Stop()
	h = servertest.Start(t, servertest.Options{DataDir: dir})
	if err := works(tok.Reveal()); err != nil {
		t.Fatalf("legacy token after the upgrade's start: %v", err)
	}
	o, err := h.Srv.Store().GetOperator(ctx, "op-legacy")
	if err != nil || !o.TokenExpiresAt.Equal(h.Clock.Now().Add(auth.LegacyTokenGrace)) {
		t.Fatalf("legacy expiry %v (%v), want now + 30 days", o.TokenExpiresAt, err)
	}
	rs, err := h.Srv.Store().ListAudit(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var audited bool
	for _, r := range rs {
		audited = audited || (r.Action == "operator.token-expiry" && r.Target == "op-legacy")
	}
	if !audited {
		t.Error("the legacy expiry is not audited")
	}
	h.Clock.Advance(auth.LegacyTokenGrace)
	expired("legacy token after its grace", works(tok.Reveal()))
}
