package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/retryinfo"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// controls are the ten statuses every simulated terminal reports: the
// three mamori controls, the agent's self-check and six a municipality's
// checklist typically adds.
var controls = []string{
	"agent", "media", "login-mfa", "isolation", "disk-encryption",
	"screen-lock", "os-updates", "antivirus", "firewall", "time-sync",
}

// maxBatch is the agent's default batch size (events per report).
const maxBatch = 500

// terminal is one simulated terminal. Its fields are used by one goroutine
// at a time (enrol, then its report loop, then drain); backAt and stormAt
// are read by the storm watcher.
type terminal struct {
	g              *gen
	i              int
	host, machine  string
	key            *ecdsa.PrivateKey
	id             string
	cc             *grpc.ClientConn
	client         mamoriv1.AgentServiceClient
	rng            *rand.Rand
	policy         int64
	statuses       []*mamoriv1.ControlStatus
	pending        []*mamoriv1.Event // not acknowledged yet: the agent's spool
	acked          []string
	everSent       map[string]bool
	lat            []time.Duration
	latWarm        []time.Duration // of reports due in the second half of the phase
	slow           []time.Time     // when reports slower than a second were due
	ok, failed     int64
	sent           int64
	stormAt        atomic.Int64 // unix ns the storm began; 0: none
	backAt         atomic.Int64 // unix ns of the first good report after the storm
	sinceStormFail bool
	// Differential reports (Config.Differential): the state digest the
	// server acknowledged (nil: send a full report), the controls changed
	// since, and how often the server asked for a full report.
	base     []byte
	dirty    map[string]bool
	needFull int64
	// dig caches digest() for the policy version digPolicy; mix clears it
	// when a control changes (the load tool's own CPU is the measurement's
	// noise).
	dig       []byte
	digPolicy int64
}

func newTerminal(g *gen, i int) *terminal {
	t := &terminal{
		g: g, i: i,
		host:     fmt.Sprintf("lg-%s-%05d", g.runID, i),
		machine:  fmt.Sprintf("loadgen-%s-%08d", g.runID, i),
		rng:      rand.New(rand.NewPCG(rand.Uint64(), uint64(i))),
		everSent: map[string]bool{},
	}
	for _, c := range controls {
		st := &mamoriv1.ControlStatus{
			Control: c, Mode: mamoriv1.Mode_MODE_MONITOR, State: mamoriv1.ControlState_CONTROL_STATE_MONITORING,
			Detail: "simulated by mamori-loadgen", Evidence: map[string]string{"source": "loadgen"},
		}
		if c == "agent" {
			st.Mode, st.State = mamoriv1.Mode_MODE_ENFORCE, mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		}
		t.statuses = append(t.statuses, st)
	}
	return t
}

func (t *terminal) facts() *mamoriv1.DeviceFacts {
	return &mamoriv1.DeviceFacts{
		Hostname: t.host, Os: "linux", OsVersion: "Debian GNU/Linux 12", Kernel: "6.1.0-loadgen",
		AgentVersion: "loadgen", MachineId: t.machine, KeyStorage: "file",
	}
}

// enroll makes a key, enrols it over a connection of its own (a full TLS
// handshake, as a terminal does), and opens the mTLS connection it reports
// over.
func (t *terminal) enroll(ctx context.Context, token string) error {
	key, err := pki.NewDeviceKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, t.host)
	if err != nil {
		return err
	}
	t.key = key
	var resp *mamoriv1.EnrollResponse
	err = t.retrying(ctx, func() (err error) {
		resp, err = t.enrollOnce(ctx, token, csr)
		return err
	}, func(err error) {
		t.g.enrollRetries.Add(1)
		t.g.retryErrs.add(status.Code(err))
	})
	if err != nil {
		return err
	}
	t.id, t.policy = resp.DeviceId, resp.GetPolicy().GetVersion()
	cert := tls.Certificate{Certificate: [][]byte{resp.Certificate}, PrivateKey: key}
	if t.cc, err = t.g.dial(&cert); err != nil {
		return err
	}
	t.client = mamoriv1.NewAgentServiceClient(t.cc)
	return nil
}

// retrying calls call until it succeeds, fails otherwise than
// Unavailable, DeadlineExceeded or ResourceExhausted, or ctx ends; retry
// is told of each error retried. Like the agent, it waits at least the
// server's retry hint (admission control), with jitter, and never less
// than its own back-off.
func (t *terminal) retrying(ctx context.Context, call func() error, retry func(error)) error {
	bo := backoff{base: t.g.cfg.BackoffBase, cap: 30 * time.Second, rng: t.rng}
	for {
		err := call()
		if err == nil {
			return nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		default:
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		retry(err)
		sleep(ctx, retryinfo.Wait(err, bo.next(), t.rng.Float64()))
	}
}

func (t *terminal) enrollOnce(ctx context.Context, token string, csr []byte) (*mamoriv1.EnrollResponse, error) {
	cc, err := t.g.dial(nil)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, t.g.cfg.CallTimeout)
	defer cancel()
	return mamoriv1.NewAgentServiceClient(cc).Enroll(cctx, &mamoriv1.EnrollRequest{Token: token, Csr: csr, Facts: t.facts()})
}

// warm sends the terminal's first report (full: no base yet), retrying
// as the agent does (retrying).
func (t *terminal) warm(ctx context.Context, retry func(error)) error {
	return t.retrying(ctx, func() error {
		_, err := t.send(ctx)
		return err
	}, retry)
}

// loop reports on the terminal's own schedule from start until stop, or
// until ctx ends. When storm closes, it reports at once.
func (t *terminal) loop(ctx context.Context, start, stop time.Time, storm <-chan struct{}) {
	cfg := t.g.cfg
	due := start.Add(time.Duration(t.rng.Float64() * float64(cfg.Interval)))
	bo := backoff{base: cfg.BackoffBase, cap: min(cfg.MaxBackoff, cfg.Interval), rng: t.rng}
	stormed := false
	var ready <-chan struct{} // after a failure: the connection is READY again
	stopReady := func() {}
	for {
		if cfg.Mode == ModeSteady && !due.Before(stop) {
			stopReady()
			return
		}
		wait := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			wait.Stop()
			stopReady()
			return
		case <-wait.C:
		case <-ready:
			// As the agent: a connection ready again ends the back-off.
			wait.Stop()
			due = time.Now()
		case <-storm:
			wait.Stop()
			if !stormed {
				stormed, due = true, time.Now()
			}
		}
		if stormed && storm != nil {
			storm = nil // a closed channel is always ready: listen once
		}
		stopReady()
		ready, stopReady = nil, func() {}
		noop := t.g.noop.Load()
		if !noop {
			t.mix()
		}
		begin := time.Now()
		_, err := t.send(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.failed++
			t.g.errs.add(status.Code(err))
			if t.stormAt.Load() != 0 {
				t.g.stormFailed.Add(1)
			}
			if up := t.g.upAt.Load(); up != 0 && begin.UnixNano() > up {
				t.g.afterUp.add(status.Code(err))
			}
			due = time.Now().Add(bo.next())
			ready, stopReady = t.watchReady(ctx)
			continue
		}
		bo.reset()
		t.ok++
		// From when the report was due: a queue in the server or in this
		// process shows up here.
		from := begin
		if due.Before(begin) {
			from = due
		}
		t.lat = append(t.lat, time.Since(from))
		if from.Sub(start) >= cfg.Duration/2 {
			t.latWarm = append(t.latWarm, time.Since(from))
		}
		if time.Since(from) > time.Second {
			t.slow = append(t.slow, from)
		}
		if s := t.stormAt.Load(); s != 0 && t.backAt.Load() == 0 && begin.UnixNano() >= s {
			t.backAt.Store(time.Now().UnixNano())
		}
		next := time.Duration(float64(cfg.Interval) * (1 + cfg.Jitter*(2*t.rng.Float64()-1)))
		due = due.Add(next)
		if len(t.pending) > 0 && !noop { // more than one batch waiting: the agent sends the next at once
			due = time.Now()
		}
	}
}

// watchReady mirrors the agent's wake-on-ready (agent/daemon): the channel
// closes when the terminal's connection changes to READY.
func (t *terminal) watchReady(ctx context.Context) (<-chan struct{}, func()) {
	wctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	go func() {
		st := t.cc.GetState()
		if st == connectivity.Idle {
			t.cc.Connect()
		}
		for t.cc.WaitForStateChange(wctx, st) {
			if st = t.cc.GetState(); st == connectivity.Ready {
				close(ready)
				return
			}
		}
	}()
	return ready, cancel
}

// mix adds this round's events and state changes.
func (t *terminal) mix() {
	m, now := t.g.cfg.Mix, time.Now()
	ev := func(control, kind string, attrs map[string]string) {
		t.pending = append(t.pending, &mamoriv1.Event{
			Id: newEventID(t.rng), Time: timestamppb.New(now), Control: control, Kind: kind, Attributes: attrs,
		})
	}
	if t.rng.Float64() < m.USBBlocked {
		ev("media", "usb_blocked", map[string]string{
			"vendor_id": "0781", "product_id": "5581", "serial": fmt.Sprintf("4C53%08d", t.rng.IntN(1e8)),
			"bus": "usb", "action": "write_blocked", "user": fmt.Sprintf("clerk%03d", t.rng.IntN(400)),
		})
	}
	if t.rng.Float64() < m.MFAFailure {
		ev("login-mfa", "mfa_failure", map[string]string{
			"user": fmt.Sprintf("clerk%03d", t.rng.IntN(400)), "method": "totp", "reason": "code_mismatch", "service": "gdm-password",
		})
	}
	if t.rng.Float64() < m.StateFlip {
		st := t.statuses[1+t.rng.IntN(len(t.statuses)-1)]
		from := st.State
		if from == mamoriv1.ControlState_CONTROL_STATE_MONITORING {
			st.State, st.Detail = mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "simulated degradation"
		} else {
			st.State, st.Detail = mamoriv1.ControlState_CONTROL_STATE_MONITORING, "simulated by mamori-loadgen"
		}
		ev(st.Control, "state_changed", map[string]string{"from": from.String(), "to": st.State.String()})
		if t.dirty == nil {
			t.dirty = map[string]bool{}
		}
		t.dirty[st.Control] = true
		t.dig = nil
	}
	for _, st := range t.statuses {
		st.ObservedAt = timestamppb.New(now)
	}
}

// send reports the statuses and up to one batch of pending events, and
// forgets the events the server acknowledged.
func (t *terminal) send(ctx context.Context) (*mamoriv1.ReportResponse, error) {
	if t.g.noop.Load() {
		cctx, cancel := context.WithTimeout(ctx, t.g.cfg.CallTimeout)
		defer cancel()
		_, err := healthpb.NewHealthClient(t.cc).Check(cctx, &healthpb.HealthCheckRequest{})
		return nil, err
	}
	batch := t.pending[:min(len(t.pending), maxBatch)]
	req := &mamoriv1.ReportRequest{
		Statuses: t.statuses, Events: batch, PolicyVersion: t.policy,
		SentAt: timestamppb.Now(),
	}
	var digest []byte
	if t.g.cfg.Differential {
		digest = t.digest()
		req.StateDigest = digest
		if t.base != nil {
			// What changed since the acknowledged state, as the agent
			// sends it; nothing at all when nothing did.
			req.BaseDigest, req.Statuses = t.base, nil
			for _, st := range t.statuses {
				if t.dirty[st.Control] {
					req.Statuses = append(req.Statuses, st)
				}
			}
			if bytes.Equal(digest, t.base) {
				req.StateDigest = nil
			}
		}
	}
	if req.BaseDigest == nil {
		req.Facts = t.facts() // a full report; the facts never change here
	}
	for _, e := range batch {
		if !t.everSent[e.Id] {
			t.everSent[e.Id] = true
			t.sent++
		}
	}
	cctx, cancel := context.WithTimeout(ctx, t.g.cfg.CallTimeout)
	resp, err := t.client.Report(cctx, req)
	cancel()
	if err != nil {
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.base = nil
		}
		return nil, err
	}
	if t.g.cfg.Differential {
		if resp.GetNeedFull() {
			t.needFull++
			t.base = nil
		} else {
			t.base = digest
			clear(t.dirty)
		}
	}
	if p := resp.GetPolicy(); p != nil {
		t.policy = p.GetVersion()
	}
	if len(batch) == 0 {
		return resp, nil // no events sent, none to acknowledge
	}
	acked := make(map[string]bool, len(resp.AckedEventIds))
	for _, id := range resp.AckedEventIds {
		acked[id] = true
	}
	keep := t.pending[:0]
	for i, e := range t.pending {
		if i < len(batch) && acked[e.Id] {
			t.acked = append(t.acked, e.Id)
			continue
		}
		keep = append(keep, e)
	}
	clear(t.pending[len(keep):])
	t.pending = keep
	return resp, nil
}

// digest is the terminal's state digest: its controls' states and
// details and the policy version (the agent's covers more; the server
// treats it as opaque).
func (t *terminal) digest() []byte {
	if t.dig != nil && t.digPolicy == t.policy {
		return t.dig
	}
	t.dig, t.digPolicy = t.digestOf(), t.policy
	return t.dig
}

func (t *terminal) digestOf() []byte {
	h := sha256.New()
	fmt.Fprintf(h, "policy %d\n", t.policy)
	for _, st := range t.statuses {
		fmt.Fprintf(h, "%s %d %d %q\n", st.Control, st.Mode, st.State, st.Detail)
	}
	return h.Sum(nil)
}

// newEventID returns a version 4 UUID from rng (fast; uniqueness, not
// secrecy, is what matters here).
func newEventID(rng *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
