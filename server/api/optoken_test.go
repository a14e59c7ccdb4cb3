package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: %v, want %s containing %q", what, err, code, msg)
	}
}

func auditActions(t *testing.T, h *servertest.Harness) []store.AuditRecord {
	t.Helper()
	rs, err := h.Srv.Store().ListAudit(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func countAudit(rs []store.AuditRecord, action, detailPart string) int {
	n := 0
	for _, r := range rs {
		if r.Action == action && strings.Contains(r.Detail, detailPart) {
			n++
		}
	}
	return n
}

// TestOperatorTokenExpiry (issue 14 item 7), through the real server's
// AdminService: an operator's token lasts 90 days; a token from before
// expiry existed is refused until the next start gives it 30 days,
// audited.
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
		wantStatus(t, what, err, codes.Unauthenticated, "expired")
	}
	helpdesk := h.Operator(t, "ヘルプ", auth.RoleHelpdesk)
	h.Clock.Advance(auth.DefaultOperatorTokenTTL - time.Second)
	if err := works(helpdesk); err != nil {
		t.Fatalf("operator token a second before 90 days: %v", err)
	}
	h.Clock.Advance(time.Second)
	expired("operator token after 90 days", works(helpdesk))

	// A token as the upgrade's migration carries it over: no expiry.
	tok := auth.NewToken(auth.OperatorTokenPrefix)
	if err := h.Srv.Store().CreateOperator(ctx, store.Operator{ID: "op-legacy", Name: "legacy", Role: "officer", CreatedAt: h.Clock.Now(),
		Token: &store.OperatorToken{ID: "op-legacy", Name: "legacy", Hash: auth.HashToken(tok.Reveal()), CreatedBy: "migration", CreatedAt: h.Clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	expired("token without expiry", works(tok.Reveal()))
	h.Stop()
	h = servertest.Start(t, servertest.Options{DataDir: dir})
	if err := works(tok.Reveal()); err != nil {
		t.Fatalf("legacy token after the upgrade's start: %v", err)
	}
	_, lt, err := h.Srv.Store().OperatorByTokenHash(ctx, auth.HashToken(tok.Reveal()))
	if err != nil || !lt.ExpiresAt.Equal(h.Clock.Now().Add(auth.LegacyTokenGrace)) {
		t.Fatalf("legacy expiry %v (%v), want now + 30 days", lt.ExpiresAt, err)
	}
	if n := countAudit(auditActions(t, h), "operator.token-expiry", ""); n != 1 {
		t.Errorf("the legacy expiry is audited %d times, want 1", n)
	}
	h.Clock.Advance(auth.LegacyTokenGrace)
	expired("legacy token after its grace", works(tok.Reveal()))
}

// TestBootstrapTokenSingleUse: the first admin's token makes that
// admin's first named token, once, and ends doing so; before that it is
// refused for anything else (without being spent); unused, it ends after
// a day. Both databases.
func TestBootstrapTokenSingleUse(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testBootstrapTokenSingleUse(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testBootstrapTokenSingleUse(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

func testBootstrapTokenSingleUse(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	ctx := context.Background()
	boot := h.Admin(t, h.Srv.Boot.AdminToken.Reveal())
	_, err := boot.FleetSummary(ctx, &mamoriv1.FleetSummaryRequest{})
	wantStatus(t, "bootstrap token on another call", err, codes.PermissionDenied, "bootstrap")
	_, err = boot.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "x", Operator: "test admin"})
	wantStatus(t, "bootstrap token for another operator", err, codes.PermissionDenied, "bootstrap")
	_, err = boot.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "bad name"})
	wantStatus(t, "bootstrap token, invalid name", err, codes.InvalidArgument, "name")

	// Two racing exchanges: exactly one wins.
	type res struct {
		resp *mamoriv1.CreateOperatorTokenResponse
		err  error
	}
	out := make(chan res, 2)
	for _, n := range []string{"laptop", "desk"} {
		go func() {
			r, err := boot.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: n})
			out <- res{r, err}
		}()
	}
	var mine string
	for range 2 {
		r := <-out
		switch {
		case r.err == nil && mine == "":
			mine = r.resp.Token
			if !r.resp.Info.ExpiresAt.AsTime().Equal(h.Clock.Now().Add(auth.DefaultOperatorTokenTTL)) {
				t.Errorf("exchanged token expires %v, want 90 days", r.resp.Info.ExpiresAt.AsTime())
			}
		case r.err == nil:
			t.Fatal("the bootstrap token made two tokens")
		default:
			// Refused by the interceptor (already spent) or by the
			// spending write (spent meanwhile).
			if c := status.Code(r.err); (c != codes.Unauthenticated && c != codes.PermissionDenied) || !strings.Contains(r.err.Error(), "bootstrap") {
				t.Fatalf("second exchange: %v", r.err)
			}
		}
	}
	if mine == "" {
		t.Fatal("no exchange succeeded")
	}
	_, err = boot.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "again"})
	wantStatus(t, "bootstrap token after its use", err, codes.Unauthenticated, "used already")
	me := h.Admin(t, mine)
	if _, err := me.FleetSummary(ctx, &mamoriv1.FleetSummaryRequest{}); err != nil {
		t.Fatalf("the exchanged token: %v", err)
	}
	l, err := me.ListOperatorTokens(ctx, &mamoriv1.ListOperatorTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tokens) != 2 || !l.Tokens[0].Bootstrap || l.Tokens[0].RevokedAt == nil || l.Tokens[1].Bootstrap || l.Tokens[1].RevokedAt != nil {
		t.Fatalf("the first admin's tokens: %v", l.Tokens)
	}
	rs := auditActions(t, h)
	if countAudit(rs, "operator.token-revoke", "bootstrap") != 1 || countAudit(rs, "operator.token-create", "name="+l.Tokens[1].Name) != 1 {
		t.Errorf("bootstrap exchange not audited as one revoke and one create: %v", rs)
	}

	// Unused, a bootstrap token ends after a day.
	h2 := servertest.Start(t, servertest.Options{DB: o.DB, DataDir: ""})
	if o.DB != "" {
		return // one PostgreSQL database holds one first admin
	}
	h2.Clock.Advance(auth.BootstrapTokenTTL)
	_, err = h2.Admin(t, h2.Srv.Boot.AdminToken.Reveal()).CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "late"})
	wantStatus(t, "bootstrap token after 24 h", err, codes.Unauthenticated, "expired")
}

// TestOperatorTokensNamedListedRevoked: opt-in, named, expiring (90 days
// by default, at most 90), listed and revoked by name, every change
// audited; an operator manages their own, an admin anyone's; a token made
// for oneself with a token ends no later than it. Both databases.
func TestOperatorTokensNamedListedRevoked(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testOperatorTokens(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testOperatorTokens(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

func testOperatorTokens(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	ctx := context.Background()
	adm := h.Admin(t, h.AdminToken)
	hdTok := h.Operator(t, "山田", auth.RoleHelpdesk)
	hd := h.Admin(t, hdTok)

	// An admin makes a token for an operator; default 90 days.
	r, err := adm.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "ci", Operator: "山田"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Info.ExpiresAt.AsTime(); !got.Equal(h.Clock.Now().Add(auth.DefaultOperatorTokenTTL)) || r.Info.OperatorId == "" || !strings.HasPrefix(r.Token, "mmo_") {
		t.Fatalf("created %v expires %v", r.Info, got)
	}
	ci := h.Admin(t, r.Token)
	if _, err := ci.ListDevices(ctx, &mamoriv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	_, err = adm.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "ci", Operator: "山田"})
	wantStatus(t, "a live name twice", err, codes.AlreadyExists, "revoke it first")
	_, err = adm.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "long", Operator: "山田", Ttl: durationpb.New(auth.MaxOperatorTokenTTL + time.Hour)})
	wantStatus(t, "over 90 days", err, codes.InvalidArgument, "90 days")
	_, err = adm.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "x", Operator: "nobody"})
	wantStatus(t, "unknown operator", err, codes.NotFound, "nobody")

	// A helpdesk operator: their own only; a token made with a token
	// ends no later than it.
	_, err = hd.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "x", Operator: "test admin"})
	wantStatus(t, "helpdesk for another operator", err, codes.PermissionDenied, "admin")
	_, err = hd.ListOperatorTokens(ctx, &mamoriv1.ListOperatorTokensRequest{All: true})
	wantStatus(t, "helpdesk lists all", err, codes.PermissionDenied, "admin")
	h.Clock.Advance(24 * time.Hour)
	own, err := hd.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := own.Info.ExpiresAt.AsTime(), h.Clock.Now().Add(auth.DefaultOperatorTokenTTL-24*time.Hour); !got.Equal(want) {
		t.Errorf("own token expires %v, want %v (the creating token's end)", got, want)
	}
	short, err := hd.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "short", Ttl: durationpb.New(2 * time.Hour)})
	if err != nil || !short.Info.ExpiresAt.AsTime().Equal(h.Clock.Now().Add(2*time.Hour)) {
		t.Fatalf("short token: %v, %v", short, err)
	}
	mine, err := hd.ListOperatorTokens(ctx, &mamoriv1.ListOperatorTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range mine.Tokens {
		names = append(names, x.Name)
		if x.OperatorName != "山田" {
			t.Errorf("helpdesk sees %s's token %s", x.OperatorName, x.Name)
		}
	}
	if strings.Join(names, ",") != "ci,default,laptop,short" {
		t.Errorf("helpdesk's tokens = %v", names)
	}
	all, err := adm.ListOperatorTokens(ctx, &mamoriv1.ListOperatorTokensRequest{All: true})
	if err != nil || len(all.Tokens) < 6 { // bootstrap, test, and 山田's four
		t.Fatalf("admin lists %d tokens (%v)", len(all.Tokens), err)
	}
	// Last use is recorded (the list shows it).
	for _, x := range all.Tokens {
		if x.Name == "ci" && x.LastUsedAt == nil {
			t.Error("ci's last use is not recorded")
		}
	}

	// Revoke by name: own, and an admin anyone's; the token stops at once.
	if _, err := hd.RevokeOperatorToken(ctx, &mamoriv1.RevokeOperatorTokenRequest{Name: "short"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.Admin(t, short.Token).ListDevices(ctx, &mamoriv1.ListDevicesRequest{})
	wantStatus(t, "revoked token", err, codes.Unauthenticated, "revoked")
	_, err = hd.RevokeOperatorToken(ctx, &mamoriv1.RevokeOperatorTokenRequest{Name: "test", Operator: "test admin"})
	wantStatus(t, "helpdesk revokes another's", err, codes.PermissionDenied, "admin")
	if _, err := adm.RevokeOperatorToken(ctx, &mamoriv1.RevokeOperatorTokenRequest{Name: "ci", Operator: "山田"}); err != nil {
		t.Fatal(err)
	}
	_, err = ci.ListDevices(ctx, &mamoriv1.ListDevicesRequest{})
	wantStatus(t, "token revoked by an admin", err, codes.Unauthenticated, "revoked")
	_, err = adm.RevokeOperatorToken(ctx, &mamoriv1.RevokeOperatorTokenRequest{Name: "ci", Operator: "山田"})
	wantStatus(t, "revoke twice", err, codes.NotFound, "no live token")
	// The name is free again.
	if _, err := adm.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "ci", Operator: "山田", Ttl: durationpb.New(time.Hour)}); err != nil {
		t.Fatalf("re-using a revoked token's name: %v", err)
	}

	rs := auditActions(t, h)
	for action, n := range map[string]int{"operator.token-create": 4, "operator.token-revoke": 2} {
		if got := countAudit(rs, action, ""); got != n {
			t.Errorf("%s audited %d times, want %d", action, got, n)
		}
	}
	for _, r := range rs {
		if strings.Contains(r.Detail, "mmo_") {
			t.Errorf("a token in the audit log: %+v", r)
		}
	}
}

// TestOperatorTokenHostileInput: malformed names, oversized fields, bad
// durations: refused with InvalidArgument, nothing written.
func TestOperatorTokenHostileInput(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	adm := h.Admin(t, h.AdminToken)
	before := len(auditActions(t, h))
	for name, req := range map[string]*mamoriv1.CreateOperatorTokenRequest{
		"empty name":    {Name: ""},
		"space":         {Name: "a b"},
		"newline":       {Name: "a\nb"},
		"bidi":          {Name: "pc\u202eexe"},
		"NUL":           {Name: "a\x00"},
		"too long":      {Name: strings.Repeat("x", 65)},
		"huge":          {Name: strings.Repeat("x", 1<<20)},
		"huge operator": {Name: "x", Operator: strings.Repeat("y", 1<<20)},
		"negative ttl":  {Name: "x", Ttl: durationpb.New(-time.Hour)},
		"under an hour": {Name: "x", Ttl: durationpb.New(time.Minute)},
		"invalid ttl":   {Name: "x", Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}},
		"enormous ttl":  {Name: "x", Ttl: &durationpb.Duration{Seconds: 1 << 62}},
	} {
		_, err := adm.CreateOperatorToken(ctx, req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	_, err := adm.RevokeOperatorToken(ctx, &mamoriv1.RevokeOperatorTokenRequest{Name: strings.Repeat("x", 1<<20)})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("huge revoke: %v", err)
	}
	if after := len(auditActions(t, h)); after != before {
		t.Errorf("refused calls wrote %d audit records", after-before)
	}
}

// TestOperatorTokenPorts: operator tokens are accepted on the admin port
// only. On the agents' port (the one every terminal reaches) every admin
// call is refused before any token is looked at, a valid admin token
// included; an agent call on the admin port is refused; an operator token
// on an agent call is refused.
func TestOperatorTokenPorts(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	d := enroll(t, h, "pc-port")
	agentsPort := mamoriv1.NewAdminServiceClient(h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"), grpc.WithPerRPCCredentials(servertest.Bearer(h.AdminToken))))
	_, err := agentsPort.ListDevices(ctx, &mamoriv1.ListDevicesRequest{})
	wantStatus(t, "admin token on the agents' port", err, codes.PermissionDenied, "agents' port")
	_, err = agentsPort.CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "x"})
	wantStatus(t, "token creation on the agents' port", err, codes.PermissionDenied, "agents' port")
	_, err = mamoriv1.NewAdminServiceClient(h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"),
		grpc.WithPerRPCCredentials(servertest.Bearer(h.Srv.Boot.AdminToken.Reveal())))).CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "x"})
	wantStatus(t, "bootstrap token on the agents' port", err, codes.PermissionDenied, "agents' port")

	// An agent call on the admin port, with its device certificate.
	adminPortDevice := mamoriv1.NewAgentServiceClient(h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost")))
	_, err = adminPortDevice.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}})
	wantStatus(t, "report on the admin port", err, codes.PermissionDenied, "admin port")
	_, err = mamoriv1.NewAgentServiceClient(h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))).Enroll(ctx,
		&mamoriv1.EnrollRequest{Token: h.Token(t, 1, 0)})
	wantStatus(t, "enrolment on the admin port", err, codes.PermissionDenied, "admin port")
	// An operator token on an enrolment (agents' port).
	_, err = mamoriv1.NewAgentServiceClient(h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"),
		grpc.WithPerRPCCredentials(servertest.Bearer(h.AdminToken)))).Enroll(ctx, &mamoriv1.EnrollRequest{Token: h.Token(t, 1, 0)})
	wantStatus(t, "operator token on Enroll", err, codes.Unauthenticated, "not accepted on agent calls")
	// The device still reports on its port; the bootstrap token was
	// never spent by the refusals.
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Admin(t, h.Srv.Boot.AdminToken.Reveal()).CreateOperatorToken(ctx, &mamoriv1.CreateOperatorTokenRequest{Name: "first"}); err != nil {
		t.Fatalf("bootstrap exchange after the refusals: %v", err)
	}
	// The standard health check answers on both ports, with a device
	// certificate or none (load balancers; mamori-loadgen -baseline calls
	// it over the terminals' own connections — refused on the agents' port
	// once the ports were split, which the baseline reported as 0 ok).
	for name, cc := range map[string]*grpc.ClientConn{
		"agents' port, device certificate": h.Dial(t, pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost")),
		"agents' port, no certificate":     h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost")),
		"admin port":                       h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost")),
	} {
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("health check on the %s: %v", name, err)
		}
	}
}
