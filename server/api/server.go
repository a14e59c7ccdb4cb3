// Package api implements the server's gRPC services: AgentService for
// terminals and AdminService for mamorictl. It is an adapter: operator
// actions are server/admin's (the console calls the same), and every
// error becomes a status code in one place, toStatus (auth.go).
//
// Who may call what is decided in one place, UnaryInterceptor (auth.go),
// from a table keyed by method. Handlers learn the caller only from the
// context the interceptor filled: an agent's device ID comes from its
// verified client certificate, never from a request body.
package api

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/attest"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/ingest"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// Deps is what the services need.
type Deps struct {
	Store  store.Store
	CA     *pki.CA
	Ingest *ingest.Batcher
	Now    func() time.Time
	Log    *slog.Logger
	// PolicyTTL is how long a server trusts its cached copy of the policy.
	// Several servers may share one database, so a policy set through
	// another server reaches this one's agents within PolicyTTL.
	PolicyTTL time.Duration
	// Attest verifies attested (TPM) enrolments; nil means a verifier with
	// attest.DefaultConfig (no EK certificate required).
	Attest *attest.Verifier
	// MFAKey seals the server-held TOTP secrets (server/mfa); nil
	// refuses MFA enrolment and sends no MFA bundles.
	MFAKey *mfa.Key
	// EnrollLimits bound enrolment (admission.go); the zero value
	// switches every limit off. Production passes DefaultEnrollLimits.
	EnrollLimits EnrollLimits
	// Admin runs the operator actions AdminService exposes, the same
	// service the console uses. Its Deps.Changed should reach this
	// server's Forget, so a policy or MFA change is served at once; nil
	// builds one over Store that does.
	Admin *admin.Service
	// Heartbeat batches the last_seen of no-change reports (issue #20);
	// the zero value is ingest.DefaultHeartbeatConfig, a negative
	// FlushEvery switches the fast path off. Server.Close flushes it.
	Heartbeat ingest.HeartbeatConfig
}

// Server is the gRPC adapter: the two services, AgentService for terminals
// and AdminService for mamorictl (whose actions are server/admin's), with
// the one interceptor that authenticates every call and maps errors to
// status codes (auth.go), and the metrics.
type Server struct {
	core
	agent    *AgentService
	admin    *AdminService
	inflight atomic.Int64 // calls inside UnaryInterceptor
}

// core is what both services share: the store, the operator actions (and
// the audit log's one way in), the clock, the log, and the cache of what
// agents are served.
type core struct {
	store   store.Store
	actions *admin.Service
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics // for /metrics (metrics.go)
	*cache
}

// AgentService serves terminals: enrolment, reports, renewal (agent.go).
type AgentService struct {
	mamoriv1.UnimplementedAgentServiceServer
	core
	ca        *pki.CA
	ingest    *ingest.Batcher
	attest    *attest.Verifier
	mfaKey    *mfa.Key
	admission *admission
	// heartbeats and states: the no-change fast path (steady.go); nil
	// heartbeats switch it off.
	heartbeats *ingest.Heartbeats
	states     *knownStates
}

// AdminService serves mamorictl: reads, and the operator actions of
// server/admin (admin.go, exceptions.go, ledger.go, mfa*.go, audit.go).
type AdminService struct {
	mamoriv1.UnimplementedAdminServiceServer
	core
	ca *pki.CA // its fingerprint goes with an enrolment token
	// agentPortV is the agents' port (SetAgentPort), told with an
	// enrolment token.
	agentPortV atomic.Value
}

func (s *AdminService) agentPort() string {
	p, _ := s.agentPortV.Load().(string)
	return p
}

// SetAgentPort records the port agents enrol on (the listener of
// SurfaceAgents), for the enrolment command mamorictl prints.
func (s *Server) SetAgentPort(port string) { s.admin.agentPortV.Store(port) }

// cache keeps, for PolicyTTL, what every report needs: the policy, the
// exceptions in force, the effective policies computed from them, and the
// MFA generation. Several servers may share one database, so what another
// server changed arrives within PolicyTTL; what this one changed is
// dropped at once (Server.Forget).
type cache struct {
	store     store.Store
	now       func() time.Time
	policyTTL time.Duration
	mu        sync.Mutex
	mfaGen    int64
	mfaGenAt  time.Time
	mfaGenOK  bool
	policy    *mamoriv1.Policy
	policyAt  time.Time
	// Active exceptions, cached like the policy (exceptions.go).
	excs   []store.Exception
	excsAt time.Time
	excsOK bool
	// Effective policies computed from the cached policy (exceptions.go).
	effMu sync.Mutex
	eff   map[effKey]*mamoriv1.Policy
}

// New checks deps and returns the services.
func New(d Deps) (*Server, error) {
	if d.Store == nil || d.CA == nil || d.Ingest == nil {
		return nil, errors.New("api: store, CA and ingest are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.PolicyTTL <= 0 {
		d.PolicyTTL = time.Second
	}
	if d.Attest == nil {
		cfg := attest.DefaultConfig()
		cfg.Now = d.Now
		v, err := attest.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		d.Attest = v
	}
	if err := d.EnrollLimits.Validate(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{core: core{store: d.Store, actions: d.Admin, now: d.Now, log: d.Log, metrics: &metrics{},
		cache: &cache{store: d.Store, now: d.Now, policyTTL: d.PolicyTTL}}}
	if s.actions == nil {
		a, err := admin.New(admin.Deps{Store: d.Store, Now: d.Now, Log: d.Log, MFAKey: d.MFAKey, Changed: s.Forget})
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		s.actions = a
	}
	s.agent = &AgentService{core: s.core, ca: d.CA, ingest: d.Ingest, attest: d.Attest, mfaKey: d.MFAKey,
		// Rate limits are about elapsed real time, not the injectable
		// clock (like the policy cache's age).
		admission: newAdmission(d.EnrollLimits, time.Now), states: &knownStates{}}
	hb, err := newHeartbeats(d, s.agent.states)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.agent.heartbeats = hb
	s.admin = &AdminService{core: s.core, ca: d.CA}
	return s, nil
}

// Forget drops what this server caches of what c says changed: an
// operator action (server/admin) changed it, here or through the console.
func (s *Server) Forget(c admin.Change) {
	if c&admin.PolicyChanged != 0 {
		s.forgetPolicy()
	}
	if c&admin.MFAChanged != 0 {
		s.forgetMFAGeneration()
	}
}

// Register adds both services to g.
func (s *Server) Register(g *grpc.Server) {
	mamoriv1.RegisterAgentServiceServer(g, s.agent)
	mamoriv1.RegisterAdminServiceServer(g, s.admin)
	// The standard health check (grpc.health.v1 Check; Watch is a
	// stream and refused): SERVING while the server serves.
	healthpb.RegisterHealthServer(g, health.NewServer())
}

// ServerOptions are the gRPC options the services expect: the single
// interceptor, message size limits, and keepalive rules that let tens of
// thousands of idle agents stay cheap.
//
// surface says which calls the listener serves (SurfaceAgents,
// SurfaceAdmin); both services are registered on both, and the
// interceptor refuses the other surface's calls with a clear status.
func (s *Server) ServerOptions(surface Surface) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.UnaryInterceptor(surface)),
		grpc.ChainStreamInterceptor(s.StreamInterceptor),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
	}
}

// WaitIdle returns when no call is being handled, or with ctx's error.
// A graceful stop uses it: once the server has sent GOAWAY no new call
// starts, so idle means every answered report is committed, and the
// connections that are left can be closed without waiting for each
// client to acknowledge the GOAWAY.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// currentPolicy returns the policy, cached for PolicyTTL.
func (s *cache) currentPolicy(ctx context.Context) (*mamoriv1.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now() // cache age is wall time, not the injectable clock
	if s.policy != nil && now.Sub(s.policyAt) < s.policyTTL {
		return s.policy, nil
	}
	p, err := s.store.CurrentPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		p = policy.Default()
	} else if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	s.policy, s.policyAt = p, now
	return p, nil
}

func (s *cache) forgetPolicy() {
	s.mu.Lock()
	s.policy = nil
	s.excsOK = false
	s.mu.Unlock()
}

// audited runs do with an audit record of the agent service (enrolment,
// renewal, one-time codes used) attached to its context, so the store
// commits it with do's write (admin.Service.Audited: the one place that
// appends to the audit log).
func (s *core) audited(ctx context.Context, actor, action, target, detail string, do func(context.Context) error) error {
	return s.actions.Audited(ctx, audit.Record{Actor: actor, Action: action, Target: target, Detail: detail}, do)
}
