// Package daemon is the agent's main loop. It enforces the cached policy
// through the control set, reports statuses and spooled events to the
// server over mutual TLS, acknowledges what the server stored, and takes
// new policy from the answers.
//
// Enforcement never waits for the network: the last policy is applied every
// round whether or not the server answers, and a refused (revoked) device
// keeps enforcing — fail closed.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/facts"
	"github.com/mamori-dev/mamori/agent/selfcheck"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/agent/transport"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/wire"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Spool is the durable event queue, as the daemon uses it. agent/spool
// implements it.
type Spool interface {
	Append(ctx context.Context, evs ...*mamoriv1.Event) error
	Pending(maxEvents, maxBytes int) ([]*mamoriv1.Event, error)
	Ack(ids []string) error
	Len() int
}

// Event kinds the daemon itself records (control "agent").
const (
	KindReportRefused  = "report_refused"
	KindPolicyRejected = "policy_rejected"
	KindPolicyApplied  = "policy_applied"
)

// Defaults.
const (
	DefaultMaxBatchEvents = 500
	DefaultMaxBatchBytes  = 1 << 20
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultBackoffBase    = time.Second
	// IntervalJitter spreads reports of a fleet: ±10 %.
	IntervalJitter = 0.10
)

// Config configures a Daemon. State and Spool are required.
type Config struct {
	State *state.Dir
	Spool Spool
	// Servers overrides the list stored at enrolment. Tried in order; the
	// next one is used when a server is unavailable.
	Servers []string
	// Token and CAFingerprint, with Servers, let Run enrol a terminal that
	// is not enrolled yet (silent install).
	Token         config.Secret
	CAFingerprint string
	// ForgetToken removes the enrolment token from where the installer
	// left it (config.ForgetToken). It is called once the terminal is
	// enrolled — right after enrolment, or at start when it already was —
	// while Token is set; the agent never needs the token again. Nil: the
	// token is left alone.
	ForgetToken func() error
	// Controls are the enforcement controls; the "agent" self-check is
	// added by the daemon.
	Controls []control.Control
	// Facts collects device facts; nil collects them from "/".
	Facts func(ctx context.Context) (*mamoriv1.DeviceFacts, error)
	// Version is reported as agent_version.
	Version string
	Log     *slog.Logger

	// Now is the clock; Sleep waits d or until ctx ends; Rand returns a
	// number in [0,1). Tests replace them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64

	CallTimeout    time.Duration
	ControlTimeout time.Duration
	MaxBatchEvents int
	MaxBatchBytes  int
	BackoffBase    time.Duration
	MaxBackoff     time.Duration
	// FullReportEvery: a full report at least this often, even while the
	// server accepts differential ones (DefaultFullReportEvery); zero or
	// less sends only full reports.
	FullReportEvery time.Duration

	// OnRound, when set, is called after every round (tests, demo;
	// mamori-agent gives back the memory a round used).
	OnRound func(RoundResult)

	// MFA carries MFA bundles between the server and agent/mfa; nil
	// when the terminal verifies no logins.
	MFA MFABundles
}

// MFABundles is what the report loop needs from agent/mfa: the device's
// HPKE public key and bundle version go into every report, and a new
// sealed bundle from the answer is handed over.
type MFABundles interface {
	PublicKey() []byte
	BundleVersion() string
	TakeBundle(ctx context.Context, deviceID string, b *mamoriv1.SealedMFABundle) error
}

// RoundResult describes one round, for OnRound.
type RoundResult struct {
	// Err is nil when the report was stored.
	Err error
	// Server that answered.
	Server string
	// Sent and Acked count events.
	Sent, Acked int
	// PolicyVersion in force after the round.
	PolicyVersion int64
	// Statuses reported.
	Statuses []*mamoriv1.ControlStatus
	// Next is the wait before the next round.
	Next time.Duration
	// Full is set when the report was a full one (not differential);
	// Changed counts the statuses a differential report carried.
	// NeedFull: the server asked for a full report. StateDigest is the
	// report's state digest.
	Full        bool
	Changed     int
	NeedFull    bool
	StateDigest string
}

// DefaultConfig returns the defaults; set State and Spool.
func DefaultConfig() Config {
	return Config{
		CallTimeout:     transport.DefaultCallTimeout,
		ControlTimeout:  10 * time.Second,
		MaxBatchEvents:  DefaultMaxBatchEvents,
		MaxBatchBytes:   DefaultMaxBatchBytes,
		BackoffBase:     DefaultBackoffBase,
		MaxBackoff:      DefaultMaxBackoff,
		FullReportEvery: DefaultFullReportEvery,
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.State == nil {
		errs = append(errs, errors.New("daemon: state directory is required"))
	}
	if c.Spool == nil {
		errs = append(errs, errors.New("daemon: spool is required"))
	}
	for _, s := range c.Servers {
		if err := config.CheckServer(s); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CallTimeout <= 0 || c.ControlTimeout <= 0 || c.BackoffBase <= 0 || c.MaxBackoff < c.BackoffBase {
		errs = append(errs, errors.New("daemon: timeouts and backoff must be positive (start from DefaultConfig)"))
	}
	if c.MaxBatchEvents <= 0 || c.MaxBatchBytes <= 0 || c.MaxBatchBytes > transport.MaxMessageBytes/2 {
		errs = append(errs, fmt.Errorf("daemon: batch limits must be positive and at most %d bytes", transport.MaxMessageBytes/2))
	}
	return errors.Join(errs...)
}

// Daemon runs the agent loop. Use New, then Run once.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	self  *selfcheck.Check
	set   *control.Set
	emit  control.Emitter
	pol   *mamoriv1.Policy
	id    *state.Identity
	conns map[string]*grpc.ClientConn
	cur   int // index of the server that answered last
	// refused is set while the server refuses this device, so the refusal
	// is recorded once per streak, not every retry.
	refused bool
	// expired is set while the certificate is expired (logged once).
	expired bool
	// renewFailing is set while renewals fail (logged once at Warn).
	renewFailing bool
	// acked is the state the server acknowledged last (nil: send a full
	// report); deltasOK is set once a server said it takes differential
	// reports (an older server would take one for a whole report).
	acked    *reportState
	deltasOK bool
	// witness is the newest signed audit checkpoint the server gave this
	// terminal, sent back in full reports (witness.go); witnessLoaded says
	// the state directory was read.
	witness       *mamoriv1.AuditCheckpoint
	witnessLoaded bool
}

// New builds a daemon.
func New(cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Facts == nil {
		cfg.Facts = func(ctx context.Context) (*mamoriv1.DeviceFacts, error) {
			return facts.Collect(ctx, facts.Options{Root: "/", AgentVersion: cfg.Version, KeyStorage: cfg.State.KeyStorage()})
		}
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, conns: map[string]*grpc.ClientConn{}}
	d.emit = NewEmitter(cfg.Spool, cfg.Now)
	self := selfcheck.Config{Version: cfg.Version, Now: cfg.Now, KeyStorage: cfg.State.KeyStorage}
	if sp, ok := cfg.Spool.(selfcheck.Spool); ok { // agent/spool: its figures and policy limits
		self.Spool = sp
	}
	d.self = selfcheck.New(self)
	scfg := control.DefaultConfig()
	scfg.Timeout, scfg.Emitter, scfg.Log, scfg.Now = cfg.ControlTimeout, d.emit, cfg.Log, cfg.Now
	set, err := control.NewSet(scfg, append([]control.Control{d.self}, cfg.Controls...)...)
	if err != nil {
		return nil, err
	}
	d.set = set
	return d, nil
}

// NewEmitter returns an Emitter that appends events to sp. Controls built
// before the daemon take one of these.
func NewEmitter(sp Spool, now func() time.Time) control.Emitter {
	if now == nil {
		now = time.Now
	}
	return &spoolEmitter{sp: sp, now: now}
}

// NewReservedEmitter is NewEmitter for the events that must not be lost to a
// full disk: logins (agent/mfa refuses a login it cannot record). They may
// use the spool's reserve (agent/spool: AppendReserved) when sp has one.
func NewReservedEmitter(sp Spool, now func() time.Time) control.Emitter {
	e := NewEmitter(sp, now).(*spoolEmitter)
	e.reserved = true
	return e
}

type spoolEmitter struct {
	sp       Spool
	now      func() time.Time
	reserved bool
}

func (e *spoolEmitter) Emit(ctx context.Context, ctl, kind string, attrs map[string]string) error {
	ev := &mamoriv1.Event{
		Id:         NewEventID(),
		Time:       timestamppb.New(e.now()),
		Control:    ctl,
		Kind:       kind,
		Attributes: attrs,
	}
	wire.Event(ev) // the server refuses what does not fit; it would block the spool
	if r, ok := e.sp.(interface {
		AppendReserved(context.Context, ...*mamoriv1.Event) error
	}); ok && e.reserved {
		return r.AppendReserved(ctx, ev)
	}
	return e.sp.Append(ctx, ev)
}

// Run loops until ctx ends; it returns nil then. It first applies the
// cached policy, before any network traffic.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.closeConns()
	switch p, err := d.cfg.State.LoadPolicy(); {
	case err == nil:
		d.setPolicy(p)
		d.log.InfoContext(ctx, "enforcing cached policy", "policy_version", p.GetVersion())
	case errors.Is(err, state.ErrNoPolicy):
		d.log.InfoContext(ctx, "no cached policy yet")
	default:
		d.log.ErrorContext(ctx, "cached policy unreadable; waiting for one from the server", "error", err)
	}
	bo := Backoff{Base: d.cfg.BackoffBase, Rand: d.cfg.Rand}
	for {
		res := d.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if res.Err != nil {
			bo.Cap = min(d.cfg.MaxBackoff, policy.ReportInterval(d.pol))
			res.Next = bo.Next()
			d.log.WarnContext(ctx, "report failed; enforcing the last policy and retrying", "error", res.Err, "retry_in", res.Next)
		} else {
			bo.Reset()
		}
		if d.cfg.OnRound != nil {
			d.cfg.OnRound(res)
		}
		sleepCtx, wake := ctx, context.CancelFunc(func() {})
		if res.Err != nil {
			// After a failure, a server connection that is ready again ends
			// the back-off early: when a server restarts, every call during
			// its absence fails fast and the back-off grows, so without this
			// an agent would wait out tens of seconds after the server is
			// back. gRPC's own reconnect back-off (capped, jittered:
			// agent/transport) still paces the attempts.
			sleepCtx, wake = d.wakeOnReady(ctx)
		}
		err := d.cfg.Sleep(sleepCtx, res.Next)
		wake()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && sleepCtx.Err() == nil {
			return nil
		}
	}
}

// wakeOnReady returns a context that ends when ctx does or when one of the
// daemon's server connections becomes READY; the cancel func stops the
// watchers. Idle connections (after a GOAWAY) are asked to connect.
func (d *Daemon) wakeOnReady(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	for _, cc := range d.conns {
		go func() {
			// Only a change to READY wakes: a connection that is READY now
			// (the server answered, with an error) must not end the
			// back-off at once.
			st := cc.GetState()
			if st == connectivity.Idle {
				cc.Connect()
			}
			for cc.WaitForStateChange(wctx, st) {
				if st = cc.GetState(); st == connectivity.Ready {
					cancel()
					return
				}
			}
		}()
	}
	return wctx, cancel
}

func (d *Daemon) setPolicy(p *mamoriv1.Policy) {
	d.pol = p
	d.self.SetPolicyVersion(p.GetVersion())
}

// round enforces, then reports once. Next is set only on success.
func (d *Daemon) round(ctx context.Context) RoundResult {
	res := RoundResult{Statuses: d.set.Round(ctx, d.pol)}
	res.PolicyVersion = d.pol.GetVersion()
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return res
	}
	f, err := d.cfg.Facts(ctx)
	if err != nil {
		d.log.WarnContext(ctx, "some device facts are unreadable", "error", err)
	}
	id, err := d.identity(ctx, f)
	if err != nil {
		res.Err = err
		return res
	}
	// Recovery codes pam_mamori.so used on its own (the socket did not
	// answer) become events before this round's batch is taken.
	if bg, ok := d.cfg.MFA.(interface{ ReportBreakGlass(context.Context) }); ok {
		bg.ReportBreakGlass(ctx)
	}
	// So do PIN keys made or removed since the last round.
	if pk, ok := d.cfg.MFA.(interface{ ReportPINKeys(context.Context) }); ok {
		pk.ReportPINKeys(ctx)
	}
	// Events the spool refused are reported now, not only when an
	// acknowledgement makes room (agent/spool: Maintain).
	if m, ok := d.cfg.Spool.(interface{ Maintain() }); ok {
		m.Maintain()
	}
	batch, err := d.cfg.Spool.Pending(d.cfg.MaxBatchEvents, d.cfg.MaxBatchBytes)
	if err != nil {
		d.log.ErrorContext(ctx, "spool unreadable; reporting statuses without events", "error", err)
		batch = nil
	}
	// What the server would refuse (a report over its limits) would be
	// refused again at every try and hold back every event behind it:
	// make it fit, saying what was cut (also for events spooled by an
	// older agent).
	for _, s := range res.Statuses {
		wire.Status(s)
	}
	for _, e := range batch {
		wire.Event(e)
	}
	req := &mamoriv1.ReportRequest{
		Facts:         f,
		Statuses:      res.Statuses,
		Events:        batch,
		PolicyVersion: d.pol.GetVersion(),
		PolicyDigest:  policyDigest(d.pol),
	}
	if d.cfg.MFA != nil {
		req.HpkePublicKey, req.MfaBundleVersion = d.cfg.MFA.PublicKey(), d.cfg.MFA.BundleVersion()
	}
	// Differential report (issue #20): what changed since the state the
	// server acknowledged, and the digest of the whole state.
	cur := newReportState(req.Statuses, req.Facts, req.PolicyVersion, req.PolicyDigest)
	req.StateDigest = cur.raw
	full := d.acked == nil || !d.deltasOK || d.cfg.FullReportEvery <= 0 || d.cfg.Now().Sub(d.acked.fullAt) >= d.cfg.FullReportEvery
	if !full {
		makeDelta(req, cur, d.acked)
	} else {
		req.WitnessedCheckpoint = d.witnessed(ctx, id)
	}
	res.Full, res.Changed, res.StateDigest = full, len(req.Statuses), cur.digest
	resp, sent, received, server, err := d.report(ctx, id, req)
	res.Server, res.Sent = server, len(batch)
	if err != nil {
		// A refused report (not a server that did not answer, which may
		// or may not have stored it: its answer to the next delta says)
		// is followed by a full one.
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			d.acked = nil
		}
		if exp := enroll.Expired(id.Cert, d.cfg.Now()); exp != nil {
			// Judged by this terminal's clock, and only once the server
			// refused too: a clock running ahead alone changes nothing.
			err = fmt.Errorf("%w: %w", exp, err)
			if !d.expired {
				d.expired = true
				d.log.ErrorContext(ctx, "DEVICE CERTIFICATE EXPIRED: the server refuses this terminal. Still enforcing the last policy. "+
					"Ask the helpdesk for a new enrolment token and run mamori-agent enroll --token TOKEN.",
					"not_after", id.Cert.NotAfter, "error", err)
			}
			d.id = nil // re-read: an operator may re-enrol this terminal while the agent runs
			d.closeConns()
			res.Err = err
			return res
		}
		d.onRefusal(ctx, err)
		res.Err = err
		return res
	}
	d.expired = false
	if enroll.RenewDue(id.Cert, d.cfg.Now()) {
		d.renew(ctx, id, server)
	}
	if d.refused {
		d.log.InfoContext(ctx, "server accepts this device again", "server", server)
		d.refused = false
	}
	if st := resp.GetServerTime(); st != nil && st.CheckValid() == nil {
		d.self.ObserveServerTime(sent, received, st.AsTime())
	}
	d.deltasOK = resp.GetDeltasAccepted()
	res.NeedFull = resp.GetNeedFull()
	switch {
	case resp.GetNeedFull():
		// The server does not hold the state this delta was against (it
		// lost it, or was restored from an older backup): a full report
		// right away. The events were stored all the same.
		d.log.InfoContext(ctx, "server asked for a full report", "server", server)
		d.acked = nil
	case full:
		cur.fullAt = d.cfg.Now()
		d.acked = cur
	default:
		cur.fullAt = d.acked.fullAt
		d.acked = cur
	}
	if cp := resp.GetAuditCheckpoint(); cp != nil {
		d.takeCheckpoint(ctx, id, cp)
	}
	res.Acked = d.ack(ctx, batch, resp.GetAckedEventIds())
	if p := resp.GetPolicy(); p != nil && (p.GetVersion() != d.pol.GetVersion() || p.GetDigest() != d.pol.GetDigest()) {
		d.takePolicy(ctx, p)
	}
	res.PolicyVersion = d.pol.GetVersion()
	if b := resp.GetMfaBundle(); b != nil && d.cfg.MFA != nil {
		if err := d.cfg.MFA.TakeBundle(ctx, id.Device.DeviceID, b); err != nil {
			d.log.ErrorContext(ctx, "mfa bundle refused; keeping the current one", "version", b.GetVersion(), "error", err)
		}
	}

	interval := policy.ReportInterval(d.pol)
	if n := resp.GetNextReportIn(); n != nil && n.CheckValid() == nil && n.AsDuration() > 0 {
		interval = min(max(n.AsDuration(), policy.MinReportInterval), policy.MaxReportInterval)
	}
	res.Next = Jitter(interval, IntervalJitter, d.cfg.Rand())
	// More waiting than one batch: send the next batch now, as long as the
	// server keeps acknowledging (never spin on a server that acks nothing).
	if res.Acked > 0 && d.cfg.Spool.Len() > 0 || resp.GetNeedFull() {
		res.Next = 0
	}
	return res
}

// identity returns the cached identity, loads it, or enrols.
func (d *Daemon) identity(ctx context.Context, f *mamoriv1.DeviceFacts) (*state.Identity, error) {
	if d.id != nil {
		return d.id, nil
	}
	id, err := d.cfg.State.LoadIdentity()
	if err == nil {
		d.id = id
		d.forgetToken(ctx)
		return id, nil
	}
	if !errors.Is(err, state.ErrNotEnrolled) || d.cfg.Token == "" || d.cfg.CAFingerprint == "" || len(d.cfg.Servers) == 0 {
		return nil, err
	}
	d.log.InfoContext(ctx, "not enrolled; enrolling with the configured token", "servers", d.cfg.Servers)
	r, err := enroll.Enroll(ctx, d.log, d.cfg.State, enroll.Params{
		Servers: d.cfg.Servers, Token: d.cfg.Token, CAFingerprint: d.cfg.CAFingerprint,
		Facts: f, CallTimeout: d.cfg.CallTimeout, Now: d.cfg.Now, Sleep: d.cfg.Sleep, Rand: d.cfg.Rand,
	})
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	d.id = r.Identity
	d.forgetToken(ctx)
	if r.Policy != nil {
		d.setPolicy(r.Policy)
		if err := d.set.Apply(ctx, d.pol); err != nil {
			d.log.WarnContext(ctx, "applying policy failed for some controls", "error", err)
		}
	}
	return d.id, nil
}

// forgetToken removes the enrolment token once the terminal is enrolled;
// a failure is logged and tried again at the next start.
func (d *Daemon) forgetToken(ctx context.Context) {
	if d.cfg.Token == "" || d.cfg.ForgetToken == nil {
		return
	}
	if err := d.cfg.ForgetToken(); err != nil {
		d.log.ErrorContext(ctx, "enrolled, but the enrolment token could not be removed from the installer's settings; remove MAMORI_TOKEN by hand", "error", err)
		return
	}
	d.cfg.Token = ""
	d.log.InfoContext(ctx, "enrolled: the enrolment token was removed from the installer's settings")
}

// renew replaces the device certificate ahead of its expiry over the
// connection that has just worked. On failure the current certificate
// stays in use and the next round tries again; the server keeps accepting
// the current one until it expires.
func (d *Daemon) renew(ctx context.Context, id *state.Identity, server string) {
	cc, err := d.conn(id, server)
	if err != nil {
		d.log.WarnContext(ctx, "certificate renewal not tried", "error", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	next, err := enroll.Renew(cctx, mamoriv1.NewAgentServiceClient(cc), d.cfg.State, id, d.cfg.Now())
	if err != nil {
		// Once per streak at Warn: it is retried every round.
		lvl := slog.LevelWarn
		if d.renewFailing {
			lvl = slog.LevelDebug
		}
		d.renewFailing = true
		d.log.Log(ctx, lvl, "device certificate renewal failed; the current certificate stays in use and renewal is retried every round",
			"not_after", id.Cert.NotAfter, "error", err)
		return
	}
	d.renewFailing = false
	d.id = next
	// New connections present the new certificate.
	d.closeConns()
	d.log.InfoContext(ctx, "device certificate renewed", "server", server, "not_after", next.Cert.NotAfter,
		"previous_not_after", id.Cert.NotAfter)
}

func (d *Daemon) servers() []string {
	if len(d.cfg.Servers) > 0 {
		return d.cfg.Servers
	}
	if d.id != nil {
		return d.id.Device.Servers
	}
	return nil
}

// report sends req to the current server, failing over to the next one on
// Unavailable or a timeout.
func (d *Daemon) report(ctx context.Context, id *state.Identity, req *mamoriv1.ReportRequest) (resp *mamoriv1.ReportResponse, sent, received time.Time, server string, err error) {
	servers := d.servers()
	if len(servers) == 0 {
		return nil, sent, received, "", errors.New("no server known: enrol again or set servers in the config")
	}
	var errs []error
	for i := range servers {
		idx := (d.cur + i) % len(servers)
		server = servers[idx]
		cc, err := d.conn(id, server)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
		sent = d.cfg.Now()
		req.SentAt = timestamppb.New(sent)
		resp, err = mamoriv1.NewAgentServiceClient(cc).Report(cctx, req)
		received = d.cfg.Now()
		cancel()
		if err == nil {
			if idx != d.cur {
				d.log.InfoContext(ctx, "reporting to another server", "server", server)
			}
			d.cur = idx
			return resp, sent, received, server, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || ctx.Err() != nil {
			return nil, sent, received, server, err
		}
	}
	return nil, sent, received, server, errors.Join(errs...)
}

func (d *Daemon) conn(id *state.Identity, addr string) (*grpc.ClientConn, error) {
	if cc, ok := d.conns[addr]; ok {
		return cc, nil
	}
	cert := id.TLSCertificate()
	cc, err := transport.Dial(addr, pki.ClientTLSConfig(id.CAPool(), &cert, transport.ServerName(addr)))
	if err != nil {
		return nil, err
	}
	d.conns[addr] = cc
	return cc, nil
}

func (d *Daemon) closeConns() {
	for addr, cc := range d.conns {
		cc.Close()
		delete(d.conns, addr)
	}
}

// onRefusal handles a device the server will not accept (revoked, or its
// certificate superseded). It keeps enforcing: a revoked terminal must not
// start allowing USB writes.
func (d *Daemon) onRefusal(ctx context.Context, err error) {
	c := status.Code(err)
	if c != codes.PermissionDenied && c != codes.Unauthenticated {
		return
	}
	// Re-read the identity next round: an operator may have re-enrolled
	// this terminal while the agent ran.
	d.id = nil
	d.closeConns()
	if d.refused {
		return
	}
	d.refused = true
	msg := status.Convert(err).Message()
	d.log.ErrorContext(ctx, "SERVER REFUSES THIS DEVICE: it may be revoked. Still enforcing the last policy. "+
		"Ask the security officer; re-enrol with mamori-agent enroll if the device was re-admitted.",
		"code", c.String(), "message", msg)
	if err := d.emit.Emit(ctx, policy.ControlAgent, KindReportRefused, map[string]string{
		"code": c.String(), "message": msg,
	}); err != nil {
		d.log.ErrorContext(ctx, "could not record the refusal", "error", err)
	}
}

// ack forgets the events the server stored. Only IDs from this batch count.
func (d *Daemon) ack(ctx context.Context, batch []*mamoriv1.Event, acked []string) int {
	inBatch := make(map[string]bool, len(batch))
	for _, e := range batch {
		inBatch[e.GetId()] = true
	}
	ids := make([]string, 0, len(acked))
	for _, id := range acked {
		if inBatch[id] {
			ids = append(ids, id)
			delete(inBatch, id)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	if err := d.cfg.Spool.Ack(ids); err != nil {
		// They will be sent again; the server stores each event once.
		d.log.ErrorContext(ctx, "could not remove acknowledged events from the spool", "error", err)
		return 0
	}
	return len(ids)
}

// takePolicy validates a new policy, saves it, then applies it. Saving
// first means a restart enforces the new policy without the server.
func (d *Daemon) takePolicy(ctx context.Context, p *mamoriv1.Policy) {
	if err := policy.Validate(p); err != nil {
		d.log.ErrorContext(ctx, "server sent a policy the agent cannot enforce; keeping the current one",
			"policy_version", p.GetVersion(), "error", err)
		_ = d.emit.Emit(ctx, policy.ControlAgent, KindPolicyRejected, map[string]string{
			"version": fmt.Sprint(p.GetVersion()), "error": err.Error(),
		})
		return
	}
	if err := d.cfg.State.SavePolicy(p); err != nil {
		// Not applied either: what is enforced must be what a restart
		// would enforce. The server sends it again next report.
		d.log.ErrorContext(ctx, "could not save the new policy; keeping the current one", "error", err)
		return
	}
	from := d.pol.GetVersion()
	d.setPolicy(p)
	d.log.InfoContext(ctx, "new policy", "from_version", from, "to_version", p.GetVersion())
	if err := d.set.Apply(ctx, p); err != nil {
		d.log.WarnContext(ctx, "applying policy failed for some controls", "error", err)
	}
	_ = d.emit.Emit(ctx, policy.ControlAgent, KindPolicyApplied, map[string]string{
		"from": fmt.Sprint(from), "to": fmt.Sprint(p.GetVersion()),
	})
}

// Backoff is exponential backoff with full jitter: the n-th wait is uniform
// in [0, min(Cap, Base·2ⁿ)).
type Backoff struct {
	Base, Cap time.Duration
	// Rand returns a number in [0,1).
	Rand    func() float64
	attempt int
}

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	ceil := b.Base
	for i := 0; i < b.attempt && ceil < b.Cap; i++ {
		ceil *= 2
	}
	if ceil > b.Cap {
		ceil = b.Cap
	}
	if b.attempt < 64 {
		b.attempt++
	}
	return time.Duration(b.Rand() * float64(ceil))
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Jitter spreads d by ±frac: r in [0,1) maps to [d·(1-frac), d·(1+frac)).
func Jitter(d time.Duration, frac, r float64) time.Duration {
	return time.Duration(float64(d) * (1 + frac*(2*r-1)))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewEventID returns a random (version 4) UUID in RFC 4122 text form, as
// the spool does for its own events.
func NewEventID() string { return uuid.NewString() }

// policyDigest is what the agent reports as the digest of the policy it
// holds. A policy from a server older than per-device policies has none:
// "-" then says "this agent compares digests", so the server sends the
// effective policy (an empty digest would mean an old agent, compared by
// version only).
func policyDigest(p *mamoriv1.Policy) string {
	if d := p.GetDigest(); d != "" {
		return d
	}
	return "-"
}
