// Package serve wires mamori-server together: store, CA, first-start
// bootstrap, the gRPC listener. cmd/mamori-server and the end-to-end tests
// both start the server through it, so the tests run what production runs.
package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/attest"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/ingest"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/postgres"
	"github.com/mamori-dev/mamori/server/store/sqlite"
	"github.com/mamori-dev/mamori/server/web"
)

// Config is the server's configuration.
type Config struct {
	// DataDir holds the CA, the server certificate and (by default) the
	// SQLite database.
	DataDir string
	// DB selects the database: empty for SQLite in DataDir, or a
	// postgres:// URL.
	DB string
	// Listen is the agents' gRPC address (enrolment, reports, renewal),
	// e.g. ":8443" or "127.0.0.1:0". It serves no AdminService call.
	Listen string
	// AdminListen is the admin API's gRPC address (mamorictl, operator
	// tokens), e.g. ":8445" or "127.0.0.1:8445"; it serves no agent call.
	// Keeping it apart lets a firewall keep the terminals' network off
	// it (docs/security.md, "Where operator tokens are accepted").
	AdminListen string
	// Hosts are the names and addresses agents use to reach this server;
	// they go into the server certificate.
	Hosts []string
	// AdminTokenFile, when set, receives the first admin token (0600)
	// instead of the log. For automation such as `make demo`.
	AdminTokenFile string
	// EKRootsFile, when set, is a PEM file of TPM manufacturers' root (and
	// intermediate) certificates: a TPM key is attested only when its EK
	// certificate chains to one of them, or its EK is on the approved
	// list (mamorictl tpm approve-ek). Empty: no EK chains, and only
	// approved EKs are attested (see docs/tpm.md). A TPM whose EK is
	// neither enrols as "TPM key, not attested"; policy require_tpm_key
	// makes it non-compliant.
	EKRootsFile string
	Ingest      ingest.Config
	// Console is the web console's HTTPS address, e.g. ":8444"; empty
	// means no console.
	Console string
	// ConsoleConfig tunes the console (sessions, lock-out).
	ConsoleConfig web.Config
	// EnrollLimits bound enrolment: per-source and per-machine rates and
	// the number in flight (server/api admission.go).
	EnrollLimits api.EnrollLimits
	// StopTimeout bounds a graceful stop: how long calls in progress may
	// take to finish before the remaining connections are closed.
	StopTimeout time.Duration
	// Watch configures incidents, notifications and daily snapshots
	// (notify.go).
	Watch Watch
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// DefaultConfig returns a configuration for a single small server.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir: "/var/lib/mamori-server",
		Listen:  ":8443",

		AdminListen: ":8445",
		Hosts:       []string{"localhost", "127.0.0.1", "::1", host},
		Ingest:      ingest.DefaultConfig(),

		ConsoleConfig: web.DefaultConfig(),
		EnrollLimits:  api.DefaultEnrollLimits(),
		StopTimeout:   DefaultStopTimeout,
		Watch:         DefaultWatch(),
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		errs = append(errs, errors.New("--db must be a postgres:// URL (leave it empty for the embedded SQLite)"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	}
	if _, port, err := net.SplitHostPort(c.AdminListen); err != nil {
		errs = append(errs, fmt.Errorf("--admin-listen %q: %w", c.AdminListen, err))
	} else if _, lport, _ := net.SplitHostPort(c.Listen); port != "0" && port == lport {
		errs = append(errs, fmt.Errorf("--admin-listen %q: the admin API needs a port of its own, not the agents' (--listen %s)", c.AdminListen, c.Listen))
	}
	if err := c.Ingest.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.EnrollLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.StopTimeout <= 0 {
		errs = append(errs, errors.New("--stop-timeout must be positive"))
	}
	if c.Console != "" {
		if _, _, err := net.SplitHostPort(c.Console); err != nil {
			errs = append(errs, fmt.Errorf("--console %q: %w", c.Console, err))
		}
		if err := c.ConsoleConfig.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if !c.Watch.Disabled {
		if err := c.Watch.Config.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Bootstrap is what a first start created. Secrets in it are shown once.
type Bootstrap struct {
	CAFingerprint string
	CACreated     bool
	// AdminToken is set only when the first admin operator was created now.
	AdminToken auth.Secret
}

// Server is a running mamori-server.
type Server struct {
	cfg     Config
	store   store.Store
	ca      *pki.CA
	api     *api.Server
	admin   *admin.Service
	batcher *ingest.Batcher
	grpc    *grpc.Server
	lis     net.Listener
	// adminGRPC serves AdminService on adminLis (Config.AdminListen).
	adminGRPC *grpc.Server
	adminLis  net.Listener
	web       *http.Server
	webLis    net.Listener
	console   *web.Console
	seeds     *auth.SeedKey // operators' TOTP seeds at rest
	// stopCheckpoints ends the audit checkpoint timer (Serve starts it).
	stopCheckpoints func()
	watcher         *incident.Watcher // nil when disabled
	Boot            Bootstrap
}

// Open opens the store, loads or creates the CA, bootstraps the first
// admin and the default policy, and binds the listener. Serve starts
// answering.
func Open(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	s := &Server{cfg: cfg, store: st}
	now := cfg.Now()
	s.ca, s.Boot.CACreated, err = pki.LoadOrCreateCA(cfg.DataDir, now)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	s.Boot.CAFingerprint = s.ca.Fingerprint()
	if err := s.bootstrap(ctx, now); err != nil {
		return nil, err
	}
	cert, err := s.ca.ServerCertificate(cfg.DataDir, cfg.Hosts, now)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	s.batcher, err = ingest.New(st, cfg.Ingest)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.batcher.Close()
		}
	}()
	mfaKey, err := mfa.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	warnMFANobody(ctx, cfg.Log, st)
	s.seeds, err = LoadOperatorSeedKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := SealOperatorSeeds(ctx, st, s.seeds, now); err != nil {
		return nil, err
	}
	if err := ExpireLegacyTokens(ctx, st, now); err != nil {
		return nil, err
	}
	verifier, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	// The operator actions, one service for AdminService and the console;
	// what they change, the gRPC server drops from its caches at once.
	s.admin, err = admin.New(admin.Deps{Store: st, Now: cfg.Now, Log: cfg.Log, MFAKey: mfaKey,
		Changed: func(c admin.Change) { s.api.Forget(c) }, SignAudit: s.ca.SignMessage, OperatorSeeds: s.seeds,
		CheckpointFile: filepath.Join(cfg.DataDir, "audit-checkpoint")})
	if err != nil {
		return nil, err
	}
	s.api, err = api.New(api.Deps{Store: st, CA: s.ca, Ingest: s.batcher, Now: cfg.Now, Log: cfg.Log, MFAKey: mfaKey, Attest: verifier,
		EnrollLimits: cfg.EnrollLimits, Admin: s.admin})
	if err != nil {
		return nil, err
	}
	tlsCfg := pki.ServerTLSConfig(cert, s.ca.Pool())
	// Certificate validity (an expired device certificate) is judged by
	// the server's clock, the same one that issues and renews them.
	tlsCfg.Time = cfg.Now
	newGRPC := func(surface api.Surface) *grpc.Server {
		opts := append(s.api.ServerOptions(surface), grpc.Creds(credentials.NewTLS(tlsCfg)))
		opts = append(opts, TransportOptions()...)
		g := grpc.NewServer(opts...)
		s.api.Register(g)
		return g
	}
	s.grpc, s.adminGRPC = newGRPC(api.SurfaceAgents), newGRPC(api.SurfaceAdmin)
	s.lis, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.api.Close()
		s.batcher.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if _, port, err := net.SplitHostPort(s.lis.Addr().String()); err == nil {
		s.api.SetAgentPort(port)
	}
	s.adminLis, err = net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		s.lis.Close()
		s.api.Close()
		s.batcher.Close()
		return nil, fmt.Errorf("admin API: listen on %s: %w", cfg.AdminListen, err)
	}
	if cfg.Console != "" {
		if err := s.openConsole(cert); err != nil {
			s.lis.Close()
			s.adminLis.Close()
			s.api.Close()
			s.batcher.Close()
			return nil, err
		}
	}
	return s, nil
}

// openConsole binds the web console's HTTPS listener. Its certificate is
// the server's, from the internal CA: browsers need that CA installed (or
// a front proxy with a public certificate).
func (s *Server) openConsole(cert tls.Certificate) error {
	c, err := web.New(web.Deps{Store: s.store, Config: s.cfg.ConsoleConfig, Now: s.cfg.Now, Log: s.cfg.Log, Metrics: s.api.WriteMetrics, Admin: s.admin,
		OperatorSeeds: s.seeds, AuditCA: s.ca.Cert})
	if err != nil {
		return err
	}
	s.console = c
	s.webLis, err = net.Listen("tcp", s.cfg.Console)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", s.cfg.Console, err)
	}
	s.web = &http.Server{
		Handler:           c.Handler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
	}
	return nil
}

// ConsoleAddr is the console's address, nil without a console.
func (s *Server) ConsoleAddr() net.Addr {
	if s.webLis == nil {
		return nil
	}
	return s.webLis.Addr()
}

// OpenStore opens the configured backend.
func OpenStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.DB == "" {
		st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "mamori.db"))
		if err != nil {
			return nil, fmt.Errorf("open SQLite store: %w", err)
		}
		return st, nil
	}
	st, err := postgres.Open(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	return st, nil
}

func (s *Server) bootstrap(ctx context.Context, now time.Time) error {
	if _, err := s.store.CurrentPolicy(ctx); errors.Is(err, store.ErrNotFound) {
		_, err := s.store.SetPolicy(ctx, store.PolicyChange{
			Policy: policy.Default(), Actor: "system", Reason: "first start: default policy (monitor mode)", At: now,
		}, 0)
		if err != nil && !errors.Is(err, store.ErrConflict) { // another server won the race
			return fmt.Errorf("store default policy: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	n, err := s.store.CountOperators(ctx)
	if err != nil {
		return fmt.Errorf("count operators: %w", err)
	}
	if n > 0 {
		return nil
	}
	_, tok, err := createOperatorAudited(ctx, s.store, "system", "first admin (bootstrap token: single use, expires in 24 h)", "admin", auth.RoleAdmin, now,
		&store.OperatorToken{Name: "bootstrap", SingleUse: true, ExpiresAt: now.Add(auth.BootstrapTokenTTL)})
	if err != nil {
		return err
	}
	if f := s.cfg.AdminTokenFile; f != "" {
		if err := atomicfile.Write(f, []byte(tok.Reveal()+"\n"), 0o600); err != nil {
			return fmt.Errorf("write admin token file: %w", err)
		}
	}
	s.Boot.AdminToken = tok
	return nil
}

// CreateOperator makes an operator and its API token called "default",
// which expires after auth.DefaultOperatorTokenTTL.
func CreateOperator(ctx context.Context, st store.Operators, name string, role auth.Role, now time.Time) (store.Operator, auth.Secret, error) {
	return createOperator(ctx, st, name, role, now, &store.OperatorToken{Name: "default", ExpiresAt: now.Add(auth.DefaultOperatorTokenTTL)})
}

// createOperator makes an operator and, when tok is set (its Name,
// ExpiresAt and SingleUse filled in), its first API token.
func createOperator(ctx context.Context, st store.Operators, name string, role auth.Role, now time.Time, tok *store.OperatorToken) (store.Operator, auth.Secret, error) {
	op := store.Operator{ID: uuid.NewString(), Name: name, Role: role.String(), CreatedAt: now}
	var secret auth.Secret
	if tok != nil {
		secret = auth.NewToken(auth.OperatorTokenPrefix)
		t := *tok
		t.ID, t.Hash, t.CreatedAt, t.OperatorID = uuid.NewString(), auth.HashToken(secret.Reveal()), now, op.ID
		if t.CreatedBy == "" {
			t.CreatedBy = "system"
		}
		op.Token = &t
		// The legacy column: what a server before named tokens would
		// check; the same expiry.
		op.TokenExpiresAt = t.ExpiresAt
	} else {
		op.TokenExpiresAt = now // console only: the legacy column holds a random hash, expired
	}
	// An audited call (store.WithAudit) names the operator it made.
	store.AmendAudit(ctx, func(r *store.AuditRecord) { r.Target = op.ID })
	if err := st.CreateOperator(ctx, op); err != nil {
		return store.Operator{}, "", fmt.Errorf("create operator %s: %w", name, err)
	}
	return op, secret, nil
}

// CreateOperatorAudited is CreateOperator with its audit record
// (operator.create by actor) committed in the same transaction. With a
// tokenName the operator gets an API token of that name (opt-in,
// auth.DefaultOperatorTokenTTL); without, none (a console-only operator).
func CreateOperatorAudited(ctx context.Context, st store.Store, actor, detail, name string, role auth.Role, now time.Time, tokenName string) (store.Operator, auth.Secret, error) {
	if tokenName == "" {
		op, _, err := createOperatorAudited(ctx, st, actor, detail+" (no API token)", name, role, now, nil)
		return op, "", err
	}
	return createOperatorAudited(ctx, st, actor, detail, name, role, now,
		&store.OperatorToken{Name: tokenName, CreatedBy: actor, ExpiresAt: now.Add(auth.DefaultOperatorTokenTTL)})
}

func createOperatorAudited(ctx context.Context, st store.Store, actor, detail, name string, role auth.Role, now time.Time, tok *store.OperatorToken) (store.Operator, auth.Secret, error) {
	if tok != nil {
		detail += " token=" + tok.Name + " token-expires=" + tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	actx, p := store.WithAudit(ctx, store.AuditRecord{At: now, Actor: actor, Action: "operator.create", Detail: detail})
	op, secret, err := createOperator(actx, st, name, role, now, tok)
	if err != nil {
		return store.Operator{}, "", err
	}
	if _, ok := p.Taken(); !ok {
		if _, err := st.AppendAudit(ctx, p.Record()); err != nil {
			return store.Operator{}, "", err
		}
	}
	return op, secret, nil
}

// CreateOperatorToken gives an existing operator (ID or exact name) a
// named API token from the server itself (mamori-server operator token,
// run with access to the data directory): how an operator gets a token
// longer than the one they hold, or a console-only operator their first.
// Audited operator.token-create by actor.
func CreateOperatorToken(ctx context.Context, st store.Store, actor, who, name string, ttl time.Duration, now time.Time) (store.OperatorToken, auth.Secret, error) {
	a, err := admin.New(admin.Deps{Store: st, Now: func() time.Time { return now }})
	if err != nil {
		return store.OperatorToken{}, "", err
	}
	return a.CreateOperatorToken(ctx, admin.Operator{ID: actor, Role: auth.RoleAdmin}, admin.NewOperatorToken{For: who, Name: name, TTL: ttl})
}

// Addr is the agents' address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// AdminAddr is the admin API's address.
func (s *Server) AdminAddr() net.Addr { return s.adminLis.Addr() }

// CA returns the server's CA.
func (s *Server) CA() *pki.CA { return s.ca }

// OperatorSeeds seals operators' console TOTP seeds (SetConsoleLogin).
func (s *Server) OperatorSeeds() *auth.SeedKey { return s.seeds }

// FlushHeartbeats writes the batched last_seen of no-change reports now
// (tests; a stop does it too).
func (s *Server) FlushHeartbeats() { s.api.FlushHeartbeats() }

// WriteMetrics writes the gRPC server's metrics (what the console's
// /metrics serves), for tests and tools without a console.
func (s *Server) WriteMetrics(w io.Writer) { s.api.WriteMetrics(w) }

// Store returns the server's store (for tests and admin subcommands).
func (s *Server) Store() store.Store { return s.store }

// Close releases a server that was opened but never served.
func (s *Server) Close() error {
	s.lis.Close()
	s.adminLis.Close()
	if s.webLis != nil {
		s.webLis.Close()
	}
	s.api.Close()
	s.batcher.Close()
	return s.store.Close()
}

// DefaultStopTimeout is how long a stop waits for calls in progress.
const DefaultStopTimeout = 10 * time.Second

// Per-connection limits. A server holds one connection per terminal
// (10,000 and more), most of them idle, and anyone who can reach the port
// can open connections before authenticating, so every per-connection
// cost is bounded here, and none grows with what a peer sends:
//
//   - ReadBufferSize/WriteBufferSize 8 KiB and SharedWriteBuffer: gRPC's
//     default is 32 KiB each, allocated per connection for its lifetime;
//     with 10,000 terminals that was most of ~100 KiB RSS per terminal.
//     A report is a few KiB; 8 KiB buffers cost only extra syscalls for
//     the rare large one.
//   - InitialWindowSize 256 KiB / InitialConnWindowSize 512 KiB: setting
//     them switches off gRPC's BDP estimation, which would otherwise let a
//     fast peer grow a connection's receive window (and what the server
//     buffers for it before the handler reads) up to 16 MiB. A 4 MiB
//     report (MaxMessageBytes, api.ServerOptions) still arrives, in a few
//     more round trips.
//   - MaxConcurrentStreams 16: an agent sends one call at a time,
//     mamorictl and the console a few; each open stream may hold a
//     message of up to MaxMessageBytes being read.
//   - MaxHeaderListSize 16 KiB: gRPC's default allows 16 MiB of headers
//     per call; ours carry a bearer token at most.
//   - keepalive enforcement: a client may ping at most every 20 s
//     (PermitWithoutStream, as idle agents do) or is disconnected with
//     GOAWAY "too_many_pings"; an idle connection is closed after 15 min
//     (the agent reconnects at its next report); a peer that stops
//     answering pings is dropped after 5 min + 20 s.
//   - ConnectionTimeout 10 s: a TLS handshake must finish within it.
//   - NumStreamWorkers 4 × GOMAXPROCS (at least 8): calls run on
//     long-lived worker goroutines whose stacks have already grown,
//     instead of a new goroutine per call that grows its stack again
//     (runtime.newstack/copystack were ~4 % of the server's CPU at
//     10,000 terminals). When every worker is busy (calls waiting on a
//     commit), gRPC starts a goroutine for the call as before, so this
//     bounds nothing. The option is marked experimental in grpc-go.
//
// Worst case per connection: 16 streams × 4 MiB being read, but only
// 512 KiB of it can be in flight unread (the connection window); the
// handshake and headers are bounded as above.
const (
	connBufferBytes       = 8 << 10
	streamWindowBytes     = 256 << 10
	connWindowBytes       = 512 << 10
	maxConcurrentStreams  = 16
	maxHeaderListBytes    = 16 << 10
	keepaliveMinPingEvery = 20 * time.Second
)

// TransportOptions are the per-connection limits above.
func TransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(connBufferBytes),
		grpc.WriteBufferSize(connBufferBytes),
		grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(streamWindowBytes),
		grpc.InitialConnWindowSize(connWindowBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinPingEvery, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 5 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.NumStreamWorkers(uint32(max(8, 4*runtime.GOMAXPROCS(0)))),
	}
}

// Serve answers until ctx ends, then stops (see shutdown).
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 3)
	if err := s.startWatcher(ctx); err != nil {
		s.shutdown()
		return fmt.Errorf("incident watcher: %w", err)
	}
	go func() { errc <- s.grpc.Serve(s.lis) }()
	go func() { errc <- s.adminGRPC.Serve(s.adminLis) }()
	ckCtx, ckStop := context.WithCancel(context.Background())
	ckDone := make(chan struct{})
	go func() { defer close(ckDone); s.checkpointAudit(ckCtx) }()
	s.stopCheckpoints = func() { ckStop(); <-ckDone }
	if s.web != nil {
		go func() {
			if err := s.web.ServeTLS(s.webLis, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("console: %w", err)
			}
		}()
	}
	select {
	case err := <-errc:
		s.shutdown()
		return err
	case <-ctx.Done():
	}
	s.shutdown()
	return nil
}

// checkpointEvery is how often the audit log's head is looked at, to be
// signed when admin.DefaultCheckpointEvery records were appended since
// the last checkpoint.
const checkpointEvery = 5 * time.Second

// checkpointAudit signs the audit log's head when it is due, until ctx
// ends (server/audit checkpoint.go).
func (s *Server) checkpointAudit(ctx context.Context) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.admin.CheckpointIfDue(ctx, admin.DefaultCheckpointEvery); err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("audit checkpoint", "error", err)
		}
	}
}

func (s *Server) shutdown() {
	if s.watcher != nil {
		s.watcher.Stop()
	}
	if s.web != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.web.Shutdown(ctx); err != nil {
			s.web.Close()
		}
		s.console.Close(ctx) // the audit row of a burst of failed sign-ins
		cancel()
	}
	s.stopGRPC()
	// Write the last_seen of the no-change reports answered so far.
	s.api.Close()
	// Commit what is still queued (handlers that were cut off above):
	// nothing was acknowledged for it, but it is not thrown away either.
	s.batcher.Close()
	// The head as it stands, signed (server/audit checkpoint.go).
	if s.stopCheckpoints != nil {
		s.stopCheckpoints()
	}
	if err := s.admin.Checkpoint(context.Background()); err != nil {
		s.cfg.Log.Error("audit checkpoint at stop", "error", err)
	}
	if err := s.store.Close(); err != nil {
		s.cfg.Log.Error("close store", "error", err)
	}
}

// stopGRPC stops the gRPC server in bounded time. GracefulStop stops
// accepting and sends every client GOAWAY, so no new call starts; then
// only the calls in progress are waited for (at most StopTimeout) — each
// answered report is committed before it is answered — and the remaining
// connections, idle ones that would otherwise be waited for one by one
// until each client acknowledges the GOAWAY, are closed at once. With
// 10,000 connected terminals that wait was ~11 s (docs/performance.md).
func (s *Server) stopGRPC() {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		ad := make(chan struct{})
		go func() { s.adminGRPC.GracefulStop(); close(ad) }()
		s.grpc.GracefulStop()
		<-ad
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
	defer cancel()
	idle := make(chan error, 1)
	go func() { idle <- s.api.WaitIdle(ctx) }()
	select {
	case <-done:
	case err := <-idle:
		if err != nil {
			s.cfg.Log.Warn("stop: calls still running after the stop timeout; cutting them off (their reports are not acknowledged, agents resend)",
				"stop_timeout", s.cfg.StopTimeout)
		}
		s.grpc.Stop()
		s.adminGRPC.Stop()
		<-done
	}
	s.cfg.Log.Info("stop: gRPC stopped", "took", time.Since(start))
}

// ConsoleLogin is what SetConsoleLogin made: the TOTP seed and its
// otpauth:// URL, shown once.
type ConsoleLogin struct {
	TOTPSecret auth.Secret
	TOTPURL    auth.Secret
}

// SetConsoleLogin gives an operator a console sign-in: login name,
// password (stored as an argon2id hash) and a new TOTP seed. It replaces
// any earlier one and is audited; the API token keeps working.
func SetConsoleLogin(ctx context.Context, st store.Store, seeds *auth.SeedKey, op store.Operator, login string, password auth.Secret, actor string, now time.Time) (ConsoleLogin, error) {
	login = strings.TrimSpace(login)
	if login == "" {
		return ConsoleLogin{}, errors.New("a console login name is required")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return ConsoleLogin{}, err
	}
	secret, url, err := auth.NewTOTPSecret(login)
	if err != nil {
		return ConsoleLogin{}, err
	}
	actx, p := store.WithAudit(ctx, store.AuditRecord{At: now, Actor: actor, Action: "operator.console-login",
		Target: op.ID, Detail: "login=" + login})
	if err := st.SetOperatorLogin(actx, store.OperatorLogin{
		OperatorID: op.ID, Login: login, PasswordHash: hash, TOTPSecret: seeds.Seal(op.ID, secret), UpdatedAt: now,
	}); err != nil {
		return ConsoleLogin{}, fmt.Errorf("set console login for %s: %w", op.Name, err)
	}
	if _, ok := p.Taken(); !ok {
		if _, err := st.AppendAudit(ctx, p.Record()); err != nil {
			return ConsoleLogin{}, err
		}
	}
	return ConsoleLogin{TOTPSecret: secret, TOTPURL: auth.Secret(url)}, nil
}

// LoadOperatorSeedKey is the key that seals operators' TOTP seeds,
// derived from the data directory's MFA key (made when missing).
func LoadOperatorSeedKey(dataDir string) (*auth.SeedKey, error) {
	if _, err := mfa.LoadOrCreateKey(dataDir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dataDir, mfa.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("operator seed key: %w", err)
	}
	return auth.NewSeedKey(b)
}

// SealOperatorSeeds seals every operator TOTP seed still stored in plain
// text (written before sealing), each audited operator.seed-sealed. It
// runs at every start; with nothing to seal it writes nothing.
func SealOperatorSeeds(ctx context.Context, st store.Store, seeds *auth.SeedKey, now time.Time) error {
	ops, err := st.ListOperators(ctx)
	if err != nil {
		return fmt.Errorf("seal operator seeds: %w", err)
	}
	for _, o := range ops {
		if o.Login == "" {
			continue
		}
		l, op, err := st.OperatorLogin(ctx, o.Login)
		if err != nil {
			return fmt.Errorf("seal operator seeds: %w", err)
		}
		if auth.IsSealed(l.TOTPSecret) || l.TOTPSecret == "" {
			continue
		}
		l.TOTPSecret = seeds.Seal(op.ID, auth.Secret(l.TOTPSecret))
		actx, p := store.WithAudit(ctx, store.AuditRecord{At: now, Actor: "system", Action: "operator.seed-sealed",
			Target: op.ID, Detail: "console TOTP seed sealed at rest"})
		if err := st.SetOperatorLogin(actx, l); err != nil {
			return fmt.Errorf("seal operator seed of %s: %w", op.ID, err)
		}
		if _, ok := p.Taken(); !ok {
			if _, err := st.AppendAudit(ctx, p.Record()); err != nil {
				return err
			}
		}
	}
	return nil
}

// ExpireLegacyTokens gives every operator API token issued before tokens
// expired an expiry auth.LegacyTokenGrace from now, each audited
// operator.token-expiry. It runs at every start.
func ExpireLegacyTokens(ctx context.Context, st store.Store, now time.Time) error {
	at := now.Add(auth.LegacyTokenGrace)
	ids, err := st.ExpireLegacyTokens(ctx, at)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := st.AppendAudit(ctx, store.AuditRecord{At: now, Actor: "system", Action: "operator.token-expiry", Target: id,
			Detail: "API token from before expiry: expires " + at.UTC().Format(time.RFC3339)}); err != nil {
			return err
		}
	}
	return nil
}

// newVerifier builds the TPM attestation verifier, checking EK
// certificates against the given manufacturers' roots when EKRootsFile is
// set. It never refuses a TPM for its EK certificate: the proof of the EK
// (credential activation) still names the same device on re-enrolment,
// and "attested" is decided by the chain or the approved list.
func newVerifier(cfg Config) (*attest.Verifier, error) {
	ac := attest.DefaultConfig()
	ac.Now = cfg.Now
	if cfg.EKRootsFile != "" {
		pemBytes, err := os.ReadFile(cfg.EKRootsFile)
		if err != nil {
			return nil, fmt.Errorf("--ek-roots: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--ek-roots %s: no PEM certificate in it", cfg.EKRootsFile)
		}
		ac.EKRoots, ac.EKIntermediates = roots, roots
	}
	v, err := attest.New(ac)
	if err != nil {
		return nil, fmt.Errorf("TPM attestation: %w", err)
	}
	return v, nil
}

// warnMFANobody says at start when the policy has a login-mfa control but
// names no user anywhere while users are enrolled: since issue #14 the
// default is nobody, so no terminal receives any factor (an upgrade from
// the "*" default withdraws every terminal's bundle at its next report).
func warnMFANobody(ctx context.Context, log *slog.Logger, st store.Store) {
	p, err := st.CurrentPolicy(ctx)
	if err != nil {
		return
	}
	us, err := st.MFAUsers(ctx)
	if err != nil || len(us) == 0 {
		return
	}
	controls := []*mamoriv1.ControlPolicy{p.GetControls()[policy.ControlLoginMFA]}
	for _, g := range p.GetGroups() {
		controls = append(controls, g.GetControls()[policy.ControlLoginMFA])
	}
	any := false
	for _, c := range controls {
		for k, v := range c.GetSettings() {
			if (k == policy.SettingMFAUsers || strings.HasPrefix(k, policy.SettingMFADeviceUsersPrefix)) && strings.TrimSpace(v) != "" {
				any = true
			}
		}
	}
	if !any && controls[0] != nil {
		log.WarnContext(ctx, "login-mfa names no users: no terminal receives any user's second factor, and terminals drop the ones they hold; "+
			"set the login-mfa setting users (or users.DEVICE-ID) per scope, see docs/mfa.md \"Who may log in where\"", "enrolled_users", len(us))
	}
}
