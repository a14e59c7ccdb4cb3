// Package loadgen simulates a fleet of mamori terminals against a real
// mamori-server: every simulated terminal has its own ECDSA key and its own
// enrolled device certificate, and reports over its own mutual-TLS gRPC
// connection, as a real agent does.
//
// Why one connection per terminal: the server takes a device's identity
// from the client certificate of the TLS connection, so two terminals can
// never share one (HTTP/2 multiplexing would send both under the first
// certificate). A terminal's connection is kept open between reports, like
// the agent's. On loopback one process holds 10,000 of them easily; the
// limit is file descriptors (RLIMIT_NOFILE, which the Go runtime raises to
// the hard limit at start) and memory (about 120 KiB per terminal in this
// process with the buffer sizes used here, about 100 KiB in the server).
//
// Three modes:
//
//   - steady: enrol N terminals, then each reports on its own schedule
//     (the interval with ±10 % jitter, first report at a random offset):
//     an open loop — a slow server does not slow the offered load of the
//     other terminals. Latency is measured from the moment a report was due,
//     so a stalled server shows up in the tail (no coordinated omission).
//   - enroll: the enrolment storm alone — N terminals enrol at once, each
//     with its own TLS handshake; time to all enrolled and failures.
//   - reconnect: steady, then the server is restarted (Config.StopServer,
//     StartServer) and every terminal reports at once — the worst case,
//     all connections dropped together; failed reports back off like the
//     agent (full jitter); time until every terminal has reported again.
//
// At the end every event a terminal sent is sent again until acknowledged
// (as the agent's spool does), then the events stored are listed through
// AdminService and compared: every acknowledged event must be stored exactly
// once, and nothing else stored for these terminals.
package loadgen

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	backoffconf "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Modes.
const (
	ModeSteady    = "steady"
	ModeEnroll    = "enroll"
	ModeReconnect = "reconnect"
)

// Mix is the chance, per report, of each kind of event.
type Mix struct {
	USBBlocked float64 // media: usb_blocked
	MFAFailure float64 // login-mfa: mfa_failure
	StateFlip  float64 // a control flips MONITORING↔DEGRADED, with a state_changed event
}

// DefaultMix is a busy fleet: one report in ten carries an event.
func DefaultMix() Mix { return Mix{USBBlocked: 0.05, MFAFailure: 0.03, StateFlip: 0.02} }

// Config configures a run.
type Config struct {
	// Server is host:port; ServerName the name its certificate carries
	// (default: the host part).
	Server, ServerName string
	// AdminServer is the admin API's host:port (mamori-server
	// --admin-listen); needed with AdminToken.
	AdminServer string
	// CA is the server's CA (ca.pem of its data directory).
	CA *x509.CertPool
	// AdminToken lets the run create its enrolment token and verify what
	// was stored. Token, if set, is used for enrolment instead.
	AdminToken, Token string
	// TokenUses is the use count of the token the run creates (0: one per
	// terminal).
	TokenUses int

	Mode      string
	Terminals int
	// Interval between reports of one terminal; Jitter spreads it (±).
	Interval time.Duration
	Jitter   float64
	// Duration of the reporting phase (steady; reconnect: before the restart).
	Duration time.Duration
	Mix      Mix
	// Differential: terminals send differential reports as the agent
	// does (issue #20): a full report first, then only what changed, a
	// "no change" report (its base digest alone) when nothing did.
	Differential bool
	// Baseline (steady mode): after the reporting phase, the same
	// terminals make the same calls for the same time to the server's
	// health check over the same connections, a no-op; Result.Baseline
	// and Result.Ratio compare the two.
	Baseline bool
	// Warmup (steady mode): before the timed phase, every terminal opens
	// its connection and sends one full report, EnrollConcurrency at a
	// time, retrying as the agent does; Result.Warmup says how that went.
	// Without it the timed phase begins with every terminal's TLS
	// handshake at once, and measures that storm rather than the reports.
	Warmup bool

	// EnrollConcurrency bounds enrolments in flight (0: all at once).
	EnrollConcurrency int
	// EnrollTimeout: a terminal not enrolled by then has failed.
	EnrollTimeout time.Duration
	// CallTimeout bounds one RPC (the agent's default is 30 s).
	CallTimeout time.Duration
	// BackoffBase and MaxBackoff: the agent's retry after a failed report,
	// full jitter, capped at min(MaxBackoff, Interval).
	BackoffBase, MaxBackoff time.Duration
	// ConnectBackoffMax caps gRPC's own reconnect back-off under the
	// terminal's (0: gRPC's default, 120 s, as the agent has it).
	ConnectBackoffMax time.Duration
	// StopServer and StartServer restart the server in reconnect mode;
	// StartServer returns once it accepts connections again. Down is how
	// long it stays stopped in between.
	StopServer, StartServer func(ctx context.Context) error
	Down                    time.Duration
	// StormTimeout bounds the wait for every terminal after the restart.
	StormTimeout time.Duration
	// DrainTimeout bounds resending unacknowledged events at the end.
	DrainTimeout time.Duration
	// Verify lists the stored events through AdminService at the end.
	Verify bool
	// Sample, when set, is called at the start and end of the reporting
	// phase (server CPU and memory); see Process.Sample.
	Sample func() (Usage, error)

	Log *slog.Logger
}

// DefaultConfig is 100 terminals reporting every minute for two minutes.
func DefaultConfig() Config {
	return Config{
		Mode: ModeSteady, Terminals: 100, Interval: time.Minute, Jitter: 0.10, Duration: 2 * time.Minute,
		Mix: DefaultMix(), EnrollTimeout: 5 * time.Minute, CallTimeout: 30 * time.Second,
		BackoffBase: time.Second, MaxBackoff: 5 * time.Minute,
		StormTimeout: 5 * time.Minute, DrainTimeout: 2 * time.Minute, Verify: true, Warmup: true,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		errs = append(errs, fmt.Errorf("server %q: %w", c.Server, err))
	}
	if c.CA == nil {
		errs = append(errs, errors.New("the server's CA certificate is required (ca.pem of its data directory)"))
	}
	if c.AdminToken == "" && c.Token == "" {
		errs = append(errs, errors.New("an admin token (or at least an enrolment token) is required"))
	}
	if c.AdminToken != "" {
		if _, _, err := net.SplitHostPort(c.AdminServer); err != nil {
			errs = append(errs, fmt.Errorf("admin server %q: %w", c.AdminServer, err))
		}
	}
	if c.Verify && c.AdminToken == "" {
		errs = append(errs, errors.New("verifying the stored events needs an admin token"))
	}
	switch c.Mode {
	case ModeSteady, ModeEnroll:
	case ModeReconnect:
		if c.StopServer == nil || c.StartServer == nil {
			errs = append(errs, errors.New("reconnect mode needs a way to restart the server (start it from the load tool)"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q: steady, enroll or reconnect", c.Mode))
	}
	if c.Terminals < 1 || c.Terminals > 100000 {
		errs = append(errs, errors.New("terminals: 1 to 100000"))
	}
	if c.Interval < 10*time.Millisecond || c.Jitter < 0 || c.Jitter >= 1 || c.Duration <= 0 {
		errs = append(errs, errors.New("interval ≥ 10ms, 0 ≤ jitter < 1 and a positive duration are required"))
	}
	if c.CallTimeout <= 0 || c.BackoffBase <= 0 || c.MaxBackoff < c.BackoffBase || c.EnrollTimeout <= 0 ||
		c.StormTimeout <= 0 || c.DrainTimeout <= 0 {
		errs = append(errs, errors.New("timeouts and backoff must be positive (start from DefaultConfig)"))
	}
	return errors.Join(errs...)
}

// Result is what a run measured. Durations are in the JSON as nanoseconds
// and, for reading, as text in the *_text fields of Summary.
type Result struct {
	Mode      string        `json:"mode"`
	Terminals int           `json:"terminals"`
	Interval  time.Duration `json:"interval_ns"`
	Enroll    EnrollResult  `json:"enroll"`
	// Warmup is the connection phase before the timed one (Config.Warmup).
	Warmup  *WarmupResult `json:"warmup,omitempty"`
	Reports ReportResult  `json:"reports"`
	// Baseline is the no-op phase (Config.Baseline); Ratio is reports
	// achieved / no-op calls achieved.
	Baseline *ReportResult `json:"baseline,omitempty"`
	Ratio    float64       `json:"ratio,omitempty"`
	// NeedFull counts differential reports answered need_full.
	NeedFull int64         `json:"need_full,omitempty"`
	Storm    *StormResult  `json:"storm,omitempty"`
	Verify   *VerifyResult `json:"verify,omitempty"`
	Server   *ServerUsage  `json:"server,omitempty"`
	// OK is false when anything failed: an enrolment, a report error in
	// steady mode, a terminal that never came back, or a lost or doubled
	// event.
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// EnrollResult describes the enrolment phase.
type EnrollResult struct {
	Took     time.Duration `json:"took_ns"`
	Enrolled int           `json:"enrolled"`
	Failed   int           `json:"failed"`
	Retries  int64         `json:"retries"`
	// RetryErrors are the errors that were retried, by gRPC code.
	RetryErrors map[string]int64 `json:"retry_errors,omitempty"`
	P50         time.Duration    `json:"p50_ns"`
	P99         time.Duration    `json:"p99_ns"`
	Max         time.Duration    `json:"max_ns"`
	Errors      map[string]int64 `json:"errors,omitempty"`
}

// WarmupResult describes the warm-up: every terminal's connection (a
// mutual-TLS handshake) and its first, full report.
type WarmupResult struct {
	Took      time.Duration `json:"took_ns"`
	Connected int           `json:"connected"`
	Failed    int           `json:"failed"`
	Retries   int64         `json:"retries"`
	// RetryErrors are the errors that were retried, by gRPC code; Errors
	// those a terminal gave up on.
	RetryErrors map[string]int64 `json:"retry_errors,omitempty"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	P50         time.Duration    `json:"p50_ns"`
	P99         time.Duration    `json:"p99_ns"`
	// WireBytes per terminal: its handshake and first report, both ways.
	WireBytes float64 `json:"wire_bytes_per_terminal"`
	// Settle is how long the tool then waited for the server to finish
	// the warm-up's work (its incident watcher sweeps the first reports'
	// control history, SQLite checkpoints them) before the timed phase:
	// until the server used under SettleIdleCPU of a core on average over
	// the last SettleQuiet (sampled every SettleEvery), at most SettleMax.
	// Only when the server's CPU can be read (Config.Sample); SettleCPU is
	// that average when the wait ended, in percent of one core.
	Settle         time.Duration `json:"settle_ns,omitempty"`
	SettleCPU      float64       `json:"settle_cpu_percent,omitempty"`
	SettleTimedOut bool          `json:"settle_timed_out,omitempty"`
}

// The wait after the warm-up (WarmupResult.Settle).
const (
	SettleIdleCPU = 10.0 // percent of one core
	SettleEvery   = 500 * time.Millisecond
	// SettleQuiet is longer than the server's incident watcher interval
	// (30 s by default): the watcher sweeps the warm-up's history in one
	// burst at its next step, which a shorter window can miss. An
	// average, not every sample: the watcher's ordinary step every 30 s
	// is a short burst of its own.
	SettleQuiet = 35 * time.Second
	SettleMax   = 3 * time.Minute
)

// ReportResult describes the reporting phase.
type ReportResult struct {
	// Took is from the start of the phase to the last answer (steady: at
	// least Duration); Achieved is OK / Took.
	Took time.Duration `json:"took_ns"`
	// WireBytes is the bytes on the wire per call (both directions, TLS
	// records and HTTP/2 frames included) during the phase.
	WireBytes float64          `json:"wire_bytes_per_call"`
	Offered   float64          `json:"offered_per_s"`
	Achieved  float64          `json:"achieved_per_s"`
	OK        int64            `json:"ok"`
	Failed    int64            `json:"failed"`
	Errors    map[string]int64 `json:"errors,omitempty"`
	P50       time.Duration    `json:"p50_ns"`
	P99       time.Duration    `json:"p99_ns"`
	P999      time.Duration    `json:"p999_ns"`
	Max       time.Duration    `json:"max_ns"`
	// Warm: the same for reports due in the second half of the phase, when
	// every terminal has its connection (the first report of each pays a
	// TLS handshake) and the backlog of the start is gone.
	WarmP50  time.Duration `json:"warm_p50_ns"`
	WarmP99  time.Duration `json:"warm_p99_ns"`
	WarmP999 time.Duration `json:"warm_p999_ns"`
	WarmMax  time.Duration `json:"warm_max_ns"`
	// SlowOver1s counts reports that took more than a second, by the
	// 10-second window (seconds since the phase began) they were due in.
	SlowOver1s   map[int]int `json:"slow_over_1s,omitempty"`
	EventsSent   int64       `json:"events_sent"`
	EventsAcked  int64       `json:"events_acked"`
	EventsUnsent int64       `json:"events_unacked_at_end"`
	// ServerCPUPerCall and ToolCPUPerCall are the CPU time (user +
	// system) the server process and this tool spent in the phase,
	// divided by the calls answered. Unlike Achieved, they stay
	// comparable when the two cores are saturated: what a call costs,
	// not how many fit. Zero when the server is not this tool's child
	// (Config.Sample unset) or /proc cannot be read.
	ServerCPUPerCall time.Duration `json:"server_cpu_per_call_ns,omitempty"`
	ToolCPUPerCall   time.Duration `json:"tool_cpu_per_call_ns,omitempty"`
}

// StormResult describes the reconnect storm.
type StormResult struct {
	// Down is how long the server was unreachable.
	Down time.Duration `json:"down_ns"`
	// AllBackAfterUp: from the server accepting again to every terminal
	// having reported; AllBackAfterStop: from the moment it went down.
	AllBackAfterUp   time.Duration `json:"all_back_after_up_ns"`
	AllBackAfterStop time.Duration `json:"all_back_after_stop_ns"`
	P50AfterUp       time.Duration `json:"p50_after_up_ns"`
	Back             int           `json:"back"`
	GaveUp           int           `json:"gave_up"`
	FailedAttempts   int64         `json:"failed_attempts"`
	// FailedAfterUp counts the failed attempts after the server was
	// accepting connections again, by gRPC code.
	FailedAfterUp map[string]int64 `json:"failed_after_up,omitempty"`
}

// VerifyResult compares what was acknowledged with what is stored.
type VerifyResult struct {
	Acked      int `json:"acked"`
	Stored     int `json:"stored"`
	Missing    int `json:"missing"`
	Duplicates int `json:"duplicates"`
	Unexpected int `json:"unexpected"`
}

// ServerUsage is the server process's cost during the reporting phase.
type ServerUsage struct {
	PID        int     `json:"pid"`
	CPUPercent float64 `json:"cpu_percent"` // of one core; 200 = both cores of this machine
	RSSBytes   int64   `json:"rss_bytes"`   // at the end of the phase
	PeakRSS    int64   `json:"peak_rss_bytes"`
	SelfCPU    float64 `json:"loadgen_cpu_percent"`
}

// Run runs the configured load and returns what it measured. The error is
// for a run that could not be carried out; a run that found problems
// returns them in Result.Problems.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(cfg.Server)
	}
	g := &gen{cfg: cfg, runID: fmt.Sprintf("%08x", rand.Uint32()), errs: newCounter(), enrollErrs: newCounter(), retryErrs: newCounter(), afterUp: newCounter()}
	res := &Result{Mode: cfg.Mode, Terminals: cfg.Terminals, Interval: cfg.Interval}
	var admin mamoriv1.AdminServiceClient
	if cfg.AdminToken != "" {
		cc, err := g.dialTo(cfg.AdminServer, nil, grpc.WithPerRPCCredentials(bearer(cfg.AdminToken)))
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		admin = mamoriv1.NewAdminServiceClient(cc)
	}
	token := cfg.Token
	if token == "" {
		cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		resp, err := admin.CreateEnrollmentToken(cctx, &mamoriv1.CreateEnrollmentTokenRequest{
			Uses: int32(cmp.Or(cfg.TokenUses, cfg.Terminals)), Ttl: durationpb.New(24 * time.Hour), Note: "mamori-loadgen " + g.runID,
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create an enrolment token (is the admin token right?): %w", err)
		}
		token = resp.Token
	}

	g.enroll(ctx, token, &res.Enroll)
	defer g.closeAll()
	if res.Enroll.Failed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d enrolments failed", res.Enroll.Failed))
	}
	if cfg.Mode == ModeEnroll || ctx.Err() != nil {
		res.OK = len(res.Problems) == 0 && ctx.Err() == nil
		return res, ctx.Err()
	}

	if cfg.Warmup && cfg.Mode == ModeSteady {
		res.Warmup = g.warmup(ctx)
		if res.Warmup.Failed > 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("%d terminals could not connect and report in the warm-up", res.Warmup.Failed))
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}

	before, _ := g.sample()
	selfBefore, _ := SelfUsage()
	w0 := g.wire.Load()
	g.costed(&res.Reports, func() { g.report(ctx, res) })
	res.Reports.WireBytes = float64(g.wire.Load()-w0) / float64(max(1, res.Reports.OK))
	if cfg.Baseline && cfg.Mode == ModeSteady && ctx.Err() == nil {
		// The same terminals, connections and pacing, calling the
		// server's health check: what the transport alone costs here.
		b := &Result{}
		g.noop.Store(true)
		g.errs.reset() // the baseline's failures, not the reports' again
		for _, t := range g.terms {
			t.lat, t.latWarm, t.slow, t.ok, t.failed = nil, nil, nil, 0, 0
		}
		w0 := g.wire.Load()
		g.costed(&b.Reports, func() { g.report(ctx, b) })
		b.Reports.WireBytes = float64(g.wire.Load()-w0) / float64(max(1, b.Reports.OK))
		g.noop.Store(false)
		res.Baseline = &b.Reports
		if b.Reports.Achieved > 0 {
			res.Ratio = res.Reports.Achieved / b.Reports.Achieved
		}
	}
	for _, t := range g.terms {
		res.NeedFull += t.needFull
	}
	after, err := g.sample()
	if err == nil && cfg.Sample != nil {
		res.Server = usage(before, after)
		if selfAfter, err := SelfUsage(); err == nil {
			res.Server.SelfCPU = usage(selfBefore, selfAfter).CPUPercent
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	g.drain(ctx, &res.Reports)
	if res.Reports.EventsUnsent > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d events still unacknowledged after %v of resending", res.Reports.EventsUnsent, cfg.DrainTimeout))
	}
	if cfg.Mode == ModeSteady && res.Reports.Failed > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d reports failed", res.Reports.Failed))
	}
	if s := res.Storm; s != nil && s.GaveUp > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d terminals did not report again within %v of the restart", s.GaveUp, cfg.StormTimeout))
	}
	if cfg.Verify {
		v, err := g.verify(ctx, admin)
		if err != nil {
			return res, fmt.Errorf("verify stored events: %w", err)
		}
		res.Verify = v
		if v.Missing > 0 || v.Duplicates > 0 || v.Unexpected > 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("events: %d acknowledged but missing, %d stored twice, %d stored but never sent",
				v.Missing, v.Duplicates, v.Unexpected))
		}
	}
	res.OK = len(res.Problems) == 0
	return res, nil
}

// gen is one run.
type gen struct {
	cfg   Config
	runID string
	terms []*terminal

	errs, enrollErrs, retryErrs *counter
	enrollRetries               atomic.Int64
	stormFailed                 atomic.Int64
	upAt                        atomic.Int64 // unix ns the server was back; 0: not yet
	afterUp                     *counter
	// noop: terminals call the health check instead of Report
	// (Config.Baseline); wire counts the bytes every connection carries
	// both ways, TLS records included.
	noop atomic.Bool
	wire atomic.Int64
	// settleEvery replaces SettleEvery in tests.
	settleEvery time.Duration
}

// countingConn counts what a connection carries (gen.wire).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// costed runs a phase and sets r's CPU per call from the server's and
// this process's CPU time across it. A collection first: each phase
// starts without the garbage of the one before (the warm-up's TLS
// handshakes before the reports, the reports before the no-op
// baseline), so neither pays for the other's.
func (g *gen) costed(r *ReportResult, phase func()) {
	runtime.GC()
	srv0, errSrv := g.sample()
	self0, errSelf := SelfUsage()
	phase()
	if r.OK == 0 {
		return
	}
	if srv1, err := g.sample(); err == nil && errSrv == nil && srv1.PID == srv0.PID {
		r.ServerCPUPerCall = (srv1.CPU - srv0.CPU) / time.Duration(r.OK)
	}
	if self1, err := SelfUsage(); err == nil && errSelf == nil {
		r.ToolCPUPerCall = (self1.CPU - self0.CPU) / time.Duration(r.OK)
	}
}

func (g *gen) sample() (Usage, error) {
	if g.cfg.Sample == nil {
		return Usage{}, errors.New("no server process to sample")
	}
	return g.cfg.Sample()
}

// dial mirrors agent/transport.Dial (the server must not import the agent):
// TLS 1.3, the agent's keepalive, default reconnect back-off. Buffers are
// smaller than gRPC's 32 KiB defaults so 10,000 connections fit in one
// process; a report is a few KiB.
func (g *gen) dial(cert *tls.Certificate, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	return g.dialTo(g.cfg.Server, cert, extra...)
}

func (g *gen) dialTo(addr string, cert *tls.Certificate, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLSConfig(g.cfg.CA, cert, g.cfg.ServerName))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 60 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20)),
		grpc.WithUserAgent("mamori-loadgen"),
		// A fixed window like the agent's (agent/transport): no BDP pings.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(1 << 20),
		grpc.WithReadBufferSize(8 << 10),
		grpc.WithWriteBufferSize(8 << 10),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, &g.wire}, nil
		}),
	}, extra...)
	if g.cfg.ConnectBackoffMax > 0 {
		bc := backoffconf.DefaultConfig
		bc.MaxDelay = g.cfg.ConnectBackoffMax
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 20 * time.Second}))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

func (g *gen) closeAll() {
	for _, t := range g.terms {
		if t != nil && t.cc != nil {
			t.cc.Close()
		}
	}
}

// enroll enrols every terminal, all at once or EnrollConcurrency at a
// time. A terminal retries on Unavailable, DeadlineExceeded and
// ResourceExhausted with the agent's back-off until EnrollTimeout.
func (g *gen) enroll(ctx context.Context, token string, out *EnrollResult) {
	n := g.cfg.Terminals
	g.terms = make([]*terminal, n)
	at, ok, took := g.bounded(ctx, n, g.enrollErrs, func(ctx context.Context, i int) error {
		t := newTerminal(g, i)
		if err := t.enroll(ctx, token); err != nil {
			g.cfg.Log.Warn("enrolment failed", "terminal", t.host, "error", err)
			return err
		}
		g.terms[i] = t
		return nil
	})
	out.Took = took
	done := g.keep(ok, at)
	out.Enrolled, out.Failed = len(g.terms), n-len(g.terms)
	out.Retries = g.enrollRetries.Load()
	out.Errors = g.enrollErrs.snapshot()
	out.RetryErrors = g.retryErrs.snapshot()
	out.P50, out.P99, out.Max = quantile(done, 0.5), quantile(done, 0.99), quantile(done, 1)
}

// warmup connects every terminal and sends its first (full) report,
// EnrollConcurrency at a time; a terminal that cannot within EnrollTimeout
// has failed and takes no part in the timed phases.
func (g *gen) warmup(ctx context.Context) *WarmupResult {
	out := &WarmupResult{}
	retried, failed := newCounter(), newCounter()
	var retries atomic.Int64
	w0 := g.wire.Load()
	n := len(g.terms)
	at, ok, took := g.bounded(ctx, n, failed, func(ctx context.Context, i int) error {
		t := g.terms[i]
		err := t.warm(ctx, func(err error) {
			retries.Add(1)
			retried.add(status.Code(err))
		})
		if err != nil {
			g.cfg.Log.Warn("warm-up failed", "terminal", t.host, "error", err)
		}
		return err
	})
	out.Took = took
	done := g.keep(ok, at)
	out.Connected, out.Failed = len(g.terms), n-len(g.terms)
	out.Retries = retries.Load()
	out.RetryErrors, out.Errors = retried.snapshot(), failed.snapshot()
	out.P50, out.P99 = quantile(done, 0.5), quantile(done, 0.99)
	out.WireBytes = float64(g.wire.Load()-w0) / float64(max(1, len(g.terms)))
	g.settle(ctx, out)
	return out
}

// settle waits for the server to go idle after the warm-up: the timed
// phase measures the steady state, not the tail of the warm-up's work.
func (g *gen) settle(ctx context.Context, out *WarmupResult) {
	first, err := g.sample()
	if err != nil {
		return
	}
	window := []Usage{first} // the samples of the last SettleQuiet and one before
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(cmp.Or(g.settleEvery, SettleEvery)):
		}
		cur, err := g.sample()
		if err != nil || cur.PID != first.PID {
			return
		}
		window = append(window, cur)
		for len(window) > 2 && cur.At.Sub(window[1].At) >= SettleQuiet {
			window = window[1:]
		}
		out.Settle = cur.At.Sub(first.At)
		out.SettleCPU = usage(window[0], cur).CPUPercent
		if cur.At.Sub(window[0].At) >= SettleQuiet && out.SettleCPU < SettleIdleCPU {
			return
		}
		if out.Settle >= SettleMax {
			out.SettleTimedOut = true
			return
		}
	}
}

// bounded runs step for terminals 0…n-1, EnrollConcurrency at a time (0:
// all at once), all within EnrollTimeout. It returns when each step that
// succeeded was done (since the start), which succeeded, and how long the
// whole took. Failures are counted in failed by gRPC code, a terminal
// whose turn did not come before the timeout as DeadlineExceeded.
func (g *gen) bounded(ctx context.Context, n int, failed *counter, step func(context.Context, int) error) (at []time.Duration, ok []bool, took time.Duration) {
	conc := g.cfg.EnrollConcurrency
	if conc <= 0 || conc > n {
		conc = n
	}
	at, ok = make([]time.Duration, n), make([]bool, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, g.cfg.EnrollTimeout)
	defer cancel()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-bctx.Done():
				failed.add(codes.DeadlineExceeded)
				return
			}
			err := step(bctx, i)
			<-sem
			if err != nil {
				failed.add(status.Code(err))
				return
			}
			at[i], ok[i] = time.Since(start), true
		}()
	}
	wg.Wait()
	return at, ok, time.Since(start)
}

// keep keeps the terminals whose step succeeded (ok, by index; the
// others' connections are closed) and returns when each kept one was
// done, sorted.
func (g *gen) keep(ok []bool, at []time.Duration) []time.Duration {
	var done []time.Duration
	terms := g.terms[:0]
	for i, t := range g.terms {
		switch {
		case ok[i]:
			done = append(done, at[i])
			terms = append(terms, t)
		case t != nil && t.cc != nil:
			t.cc.Close()
		}
	}
	clear(g.terms[len(terms):])
	g.terms = terms
	sortDurations(done)
	return done
}

// report runs the reporting phase (and the storm in reconnect mode).
func (g *gen) report(ctx context.Context, res *Result) {
	cfg := g.cfg
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	storm := make(chan struct{}) // closed: every terminal reports now
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(cfg.Duration)
	for _, t := range g.terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.loop(rctx, start, stop, storm)
		}()
	}
	if cfg.Mode == ModeReconnect {
		res.Storm = g.storm(rctx, start, storm)
		cancel()
	}
	wg.Wait()
	r := &res.Reports
	// Until the last answer, not the planned Duration: a server that
	// falls behind answers the reports due in the phase after it, and
	// Achieved must not count them as if they came in time.
	r.Took = max(time.Since(start), cfg.Duration)
	var lat, warm []time.Duration
	for _, t := range g.terms {
		lat = append(lat, t.lat...)
		warm = append(warm, t.latWarm...)
		r.OK += t.ok
		r.Failed += t.failed
		r.EventsSent += t.sent
		r.EventsAcked += int64(len(t.acked))
		for _, at := range t.slow {
			if r.SlowOver1s == nil {
				r.SlowOver1s = map[int]int{}
			}
			r.SlowOver1s[int(at.Sub(start).Seconds())/10*10]++
		}
	}
	r.Errors = g.errs.snapshot()
	r.Offered = float64(len(g.terms)) / cfg.Interval.Seconds()
	r.Achieved = float64(r.OK) / r.Took.Seconds()
	sortDurations(lat)
	r.P50, r.P99, r.P999, r.Max = quantile(lat, 0.5), quantile(lat, 0.99), quantile(lat, 0.999), quantile(lat, 1)
	sortDurations(warm)
	r.WarmP50, r.WarmP99, r.WarmP999, r.WarmMax = quantile(warm, 0.5), quantile(warm, 0.99), quantile(warm, 0.999), quantile(warm, 1)
}

// storm waits Duration, restarts the server and measures the way back.
func (g *gen) storm(ctx context.Context, start time.Time, storm chan struct{}) *StormResult {
	out := &StormResult{}
	select {
	case <-time.After(time.Until(start.Add(g.cfg.Duration))):
	case <-ctx.Done():
		return out
	}
	down := time.Now()
	for _, t := range g.terms {
		t.stormAt.Store(down.UnixNano())
	}
	err := g.cfg.StopServer(ctx)
	// Every connection dropped at once: the worst case is that every
	// terminal notices now and reports at once.
	close(storm)
	if err == nil {
		sleep(ctx, g.cfg.Down)
		err = g.cfg.StartServer(ctx)
	}
	if err != nil {
		g.cfg.Log.Error("restart failed", "error", err)
		out.GaveUp = len(g.terms)
		return out
	}
	up := time.Now()
	g.upAt.Store(up.UnixNano())
	out.Down = up.Sub(down)
	deadline := time.NewTimer(g.cfg.StormTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		back := 0
		for _, t := range g.terms {
			if t.backAt.Load() != 0 {
				back++
			}
		}
		if back == len(g.terms) {
			break
		}
		select {
		case <-tick.C:
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		break
	}
	var after []time.Duration
	last := time.Time{}
	for _, t := range g.terms {
		b := t.backAt.Load()
		if b == 0 {
			out.GaveUp++
			continue
		}
		at := time.Unix(0, b)
		out.Back++
		after = append(after, max(0, at.Sub(up)))
		if at.After(last) {
			last = at
		}
	}
	sortDurations(after)
	out.P50AfterUp = quantile(after, 0.5)
	if out.GaveUp == 0 {
		out.AllBackAfterUp, out.AllBackAfterStop = max(0, last.Sub(up)), last.Sub(down)
	}
	out.FailedAttempts = g.stormFailed.Load()
	out.FailedAfterUp = g.afterUp.snapshot()
	return out
}

// drain resends every unacknowledged event until it is acknowledged or
// DrainTimeout passes.
func (g *gen) drain(ctx context.Context, r *ReportResult) {
	dctx, cancel := context.WithTimeout(ctx, g.cfg.DrainTimeout)
	defer cancel()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, t := range g.terms {
		if len(t.pending) == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			bo := backoff{base: g.cfg.BackoffBase, cap: min(g.cfg.MaxBackoff, g.cfg.Interval), rng: t.rng}
			for len(t.pending) > 0 && dctx.Err() == nil {
				if _, err := t.send(dctx); err != nil {
					sleep(dctx, bo.next())
					continue
				}
				bo.reset()
			}
		}()
	}
	wg.Wait()
	r.EventsAcked = 0
	for _, t := range g.terms {
		r.EventsUnsent += int64(len(t.pending))
		r.EventsAcked += int64(len(t.acked))
	}
}

// verify lists every stored event and compares with what was acknowledged.
func (g *gen) verify(ctx context.Context, admin mamoriv1.AdminServiceClient) (*VerifyResult, error) {
	ours := make(map[string]*terminal, len(g.terms))
	acked := map[string]int{} // event ID → times stored
	sent := map[string]bool{}
	for _, t := range g.terms {
		ours[t.id] = t
		for _, id := range t.acked {
			acked[id] = 0
		}
		for id := range t.everSent {
			sent[id] = true
		}
	}
	v := &VerifyResult{Acked: len(acked)}
	page := ""
	for range 1_000_000 { // pages of 1,000: up to a billion events
		cctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
		resp, err := admin.ListEvents(cctx, &mamoriv1.ListEventsRequest{PageSize: 1000, PageToken: page})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Events {
			if ours[e.DeviceId] == nil {
				continue
			}
			v.Stored++
			id := e.GetEvent().GetId()
			if n, ok := acked[id]; ok {
				acked[id] = n + 1
				if n == 1 {
					v.Duplicates++
				}
			} else if !sent[id] {
				v.Unexpected++
			}
		}
		if page = resp.NextPageToken; page == "" {
			break
		}
	}
	for _, n := range acked {
		if n == 0 {
			v.Missing++
		}
	}
	return v, nil
}

// counter counts errors by gRPC code.
type counter struct {
	mu sync.Mutex
	m  map[string]int64
}

func newCounter() *counter { return &counter{m: map[string]int64{}} }

func (c *counter) add(code codes.Code) {
	c.mu.Lock()
	c.m[code.String()]++
	c.mu.Unlock()
}

func (c *counter) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *counter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

// quantile of sorted d (nearest rank); 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// bearer sends an operator token with every call, over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// backoff is the agent's: full jitter, doubling up to cap.
type backoff struct {
	base, cap time.Duration
	rng       *rand.Rand
	attempt   int
}

func (b *backoff) next() time.Duration {
	ceil := b.base
	for i := 0; i < b.attempt && ceil < b.cap; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.cap)
	if b.attempt < 64 {
		b.attempt++
	}
	return time.Duration(b.rng.Float64() * float64(ceil))
}

func (b *backoff) reset() { b.attempt = 0 }

// ExchangeBootstrap returns an admin token the run can use for many
// calls. A first admin's bootstrap token (mamori-server's admin.token) is
// single use: it only makes its operator's first named token, so it is
// exchanged here for one called name (90 days) and exchanged is true; any
// other token is returned as it is.
func ExchangeBootstrap(ctx context.Context, cfg Config, name string) (token string, exchanged bool, err error) {
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(cfg.AdminServer)
	}
	g := &gen{cfg: cfg}
	cc, err := g.dialTo(cfg.AdminServer, nil, grpc.WithPerRPCCredentials(bearer(cfg.AdminToken)))
	if err != nil {
		return "", false, err
	}
	defer cc.Close()
	admin := mamoriv1.NewAdminServiceClient(cc)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = admin.ListOperatorTokens(cctx, &mamoriv1.ListOperatorTokensRequest{})
	if status.Code(err) != codes.PermissionDenied {
		return cfg.AdminToken, false, err
	}
	resp, err := admin.CreateOperatorToken(cctx, &mamoriv1.CreateOperatorTokenRequest{Name: name})
	if err != nil {
		return "", false, fmt.Errorf("exchange the bootstrap token: %w", err)
	}
	return resp.Token, true, nil
}
