package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/daemon/daemontest"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/retryinfo"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

const goodToken = "mme_good-token"

// fakeServer is an AgentService behind real mutual TLS with a real CA.
type fakeServer struct {
	mamoriv1.UnimplementedAgentServiceServer
	ca   *pki.CA
	addr string

	mu       sync.Mutex
	reports  []*mamoriv1.ReportRequest
	devices  map[string]string // machine id -> device id
	policy   *mamoriv1.Policy
	reportFn func(*mamoriv1.ReportRequest) ([]string, error) // acked ids or error
	// busy answers this many enrolments ResourceExhausted with a 3 s
	// retry hint; csrs records every enrolment's CSR.
	busy int
	csrs [][]byte
}

func startServer(t *testing.T) *fakeServer {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := pki.LoadOrCreateCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ca: ca, addr: lis.Addr().String(), devices: map[string]string{}, policy: policy.Default()}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(cert, ca.Pool()))))
	mamoriv1.RegisterAgentServiceServer(g, fs)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return fs
}

func (s *fakeServer) Enroll(ctx context.Context, req *mamoriv1.EnrollRequest) (*mamoriv1.EnrollResponse, error) {
	if req.Token != goodToken {
		return nil, status.Error(codes.PermissionDenied, "enrolment token refused")
	}
	s.mu.Lock()
	s.csrs = append(s.csrs, req.Csr)
	if s.busy > 0 {
		s.busy--
		s.mu.Unlock()
		return nil, retryinfo.Error(codes.ResourceExhausted, 3*time.Second, "busy enrolling others")
	}
	id, ok := s.devices[req.Facts.GetMachineId()]
	if !ok {
		id = uuid.NewString()
		s.devices[req.Facts.GetMachineId()] = id
	}
	p := s.policy
	s.mu.Unlock()
	der, _, err := s.ca.SignDeviceCSR(req.Csr, id, false, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &mamoriv1.EnrollResponse{DeviceId: id, Certificate: der, CaCertificate: s.ca.Cert.Raw, Policy: p}, nil
}

func (s *fakeServer) Report(ctx context.Context, req *mamoriv1.ReportRequest) (*mamoriv1.ReportResponse, error) {
	p, _ := peer.FromContext(ctx)
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a device certificate is required")
	}
	if _, err := pki.DeviceIDFromCert(ti.State.VerifiedChains[0][0]); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	s.mu.Lock()
	s.reports = append(s.reports, req)
	fn, pol := s.reportFn, s.policy
	s.mu.Unlock()
	var acked []string
	if fn != nil {
		var err error
		if acked, err = fn(req); err != nil {
			return nil, err
		}
	} else {
		for _, e := range req.Events {
			acked = append(acked, e.Id)
		}
	}
	resp := &mamoriv1.ReportResponse{AckedEventIds: acked, ServerTime: timestamppb.Now(), NextReportIn: durationpb.New(time.Minute)}
	if req.PolicyVersion != pol.Version {
		resp.Policy = pol
	}
	return resp, nil
}

func (s *fakeServer) Reports() []*mamoriv1.ReportRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mamoriv1.ReportRequest(nil), s.reports...)
}

func testFacts() *mamoriv1.DeviceFacts {
	return &mamoriv1.DeviceFacts{Hostname: "t001", Os: "linux", MachineId: "0123456789abcdef0123456789abcdef", KeyStorage: "file"}
}

func closedAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func enrolled(t *testing.T, s *fakeServer) *state.Dir {
	t.Helper()
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.Enroll(t.Context(), nil, dir, enroll.Params{
		Servers: []string{s.addr}, Token: goodToken, CAFingerprint: s.ca.Fingerprint(), Facts: testFacts(),
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestEnroll(t *testing.T) {
	s := startServer(t)
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		servers []string
		token   string
		fp      string
		wantErr error
	}{
		{"pinned", []string{s.addr}, goodToken, s.ca.Fingerprint(), nil},
		{"fingerprint as people copy it", []string{s.addr}, goodToken, "SHA256:" + strings.ToUpper(s.ca.Fingerprint()), nil},
		{"wrong fingerprint", []string{s.addr}, goodToken, other.Fingerprint(), enroll.ErrWrongCA},
		{"token refused", []string{s.addr}, "mme_bad", s.ca.Fingerprint(), enroll.ErrTokenRefused},
		{"unreachable then ok", []string{closedAddr(t), s.addr}, goodToken, s.ca.Fingerprint(), nil},
		{"unreachable", []string{closedAddr(t)}, goodToken, s.ca.Fingerprint(), enroll.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := state.Open(t.TempDir())
			res, err := enroll.Enroll(t.Context(), nil, dir, enroll.Params{
				Servers: tt.servers, Token: config.Secret(tt.token), CAFingerprint: tt.fp, Facts: testFacts(), CallTimeout: 5 * time.Second,
			})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if _, lerr := dir.LoadIdentity(); !errors.Is(lerr, state.ErrNotEnrolled) {
					t.Errorf("a failed enrolment left state behind: %v", lerr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, err := dir.LoadIdentity()
			if err != nil {
				t.Fatal(err)
			}
			if id.Device.DeviceID != res.Identity.Device.DeviceID || pki.Fingerprint(id.CA.Raw) != s.ca.Fingerprint() {
				t.Errorf("stored identity %+v", id.Device)
			}
			if p, err := dir.LoadPolicy(); err != nil || p.Version != 1 {
				t.Errorf("policy %v, %v", p, err)
			}
		})
	}
}

func TestReEnrolKeepsDeviceNewKey(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	first, _ := dir.LoadIdentity()
	if _, err := enroll.Enroll(t.Context(), nil, dir, enroll.Params{
		Servers: []string{s.addr}, Token: goodToken, CAFingerprint: s.ca.Fingerprint(), Facts: testFacts(),
	}); err != nil {
		t.Fatal(err)
	}
	second, err := dir.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if second.Device.DeviceID != first.Device.DeviceID {
		t.Errorf("device id changed: %s -> %s", first.Device.DeviceID, second.Device.DeviceID)
	}
	if second.Cert.Equal(first.Cert) || second.Cert.PublicKey.(*ecdsa.PublicKey).Equal(first.Cert.PublicKey) {
		t.Error("re-enrolment kept the old certificate")
	}
}

// harness runs a daemon until stop is called from OnRound.
type harness struct {
	rounds []daemon.RoundResult
	sleeps []time.Duration
}

func runDaemon(t *testing.T, cfg daemon.Config, until func(h *harness) bool) *harness {
	t.Helper()
	h := &harness{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cfg.OnRound = func(r daemon.RoundResult) {
		h.rounds = append(h.rounds, r)
		if until(h) {
			cancel()
		}
	}
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		h.sleeps = append(h.sleeps, d)
		return ctx.Err()
	}
	cfg.CallTimeout = 5 * time.Second
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("daemon did not reach the expected state in time")
	}
	return h
}

func baseConfig(dir *state.Dir, sp daemon.Spool) daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool = dir, sp
	cfg.Facts = func(context.Context) (*mamoriv1.DeviceFacts, error) { return testFacts(), nil }
	cfg.Rand = func() float64 { return 0.5 }
	cfg.Version = "test"
	return cfg
}

func event(kind string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: kind}
}

func TestReportsAckAndResend(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	sp := &daemontest.Spool{}
	e1, e2, e3 := event("a"), event("b"), event("c")
	sp.Append(t.Context(), e1, e2, e3)
	// First report: the server stores only e1; afterwards everything.
	var n int
	s.reportFn = func(r *mamoriv1.ReportRequest) ([]string, error) {
		n++
		var ids []string
		for _, e := range r.Events {
			if n > 1 || e.Id == e1.Id {
				ids = append(ids, e.Id)
			}
		}
		return ids, nil
	}
	runDaemon(t, baseConfig(dir, sp), func(h *harness) bool { return len(h.rounds) == 2 })

	reps := s.Reports()
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2", len(reps))
	}
	ids := func(r *mamoriv1.ReportRequest) (out []string) {
		for _, e := range r.Events {
			if e.Control == "media" {
				out = append(out, e.Id)
			}
		}
		return out
	}
	if got := ids(reps[0]); len(got) != 3 {
		t.Errorf("first report carried %d media events, want 3", len(got))
	}
	if got := ids(reps[1]); len(got) != 2 || got[0] != e2.Id || got[1] != e3.Id {
		t.Errorf("second report resent %v, want the two unacked", got)
	}
	if sp.Len() != 0 {
		t.Errorf("spool holds %d events after everything was acked", sp.Len())
	}
	// Statuses include the self-check; the state change to ENFORCED was
	// spooled and reported.
	var sawAgent, sawChange bool
	for _, st := range reps[0].Statuses {
		sawAgent = sawAgent || st.Control == "agent" && st.State == mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	}
	for _, e := range reps[0].Events {
		sawChange = sawChange || e.Kind == control.KindStateChanged && e.Control == "agent"
	}
	if !sawAgent || !sawChange {
		t.Errorf("agent status %v, state_changed event %v", sawAgent, sawChange)
	}
	if reps[1].PolicyVersion != 1 || reps[0].SentAt == nil {
		t.Errorf("policy_version %d, sent_at %v", reps[1].PolicyVersion, reps[0].SentAt)
	}
}

func TestNextBatchPromptly(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	sp := &daemontest.Spool{}
	for i := range 7 {
		sp.Append(t.Context(), event(fmt.Sprint(i)))
	}
	cfg := baseConfig(dir, sp)
	cfg.MaxBatchEvents = 3
	h := runDaemon(t, cfg, func(h *harness) bool { return sp.Len() == 0 && h.rounds[len(h.rounds)-1].Next > 0 })
	for i, r := range h.rounds[:len(h.rounds)-1] {
		if r.Next != 0 {
			t.Errorf("round %d waited %v with events pending", i, r.Next)
		}
	}
	if last := h.rounds[len(h.rounds)-1].Next; last != time.Minute {
		t.Errorf("after draining waited %v, want the interval (1m, jitter 0 at rand 0.5)", last)
	}
	if len(h.rounds) < 3 {
		t.Errorf("%d rounds for 7+ events in batches of 3", len(h.rounds))
	}
}

func TestUnavailableBacksOffAndKeepsEnforcing(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	p := policy.Default()
	p.Version = 4
	p.Controls["media"] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}
	p.ReportInterval = durationpb.New(20 * time.Second)
	if err := dir.SavePolicy(p); err != nil {
		t.Fatal(err)
	}
	media := &controltest.Control{ControlName: "media"}
	cfg := baseConfig(dir, &daemontest.Spool{})
	cfg.Servers = []string{closedAddr(t)}
	cfg.Controls = []control.Control{media}
	cfg.Rand = func() float64 { return 0.999 }
	h := runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 8 })

	wantCeil := []time.Duration{1, 2, 4, 8, 16, 20, 20, 20}
	for i, r := range h.rounds {
		if r.Err == nil {
			t.Fatalf("round %d succeeded against a closed port", i)
		}
		ceil := wantCeil[i] * time.Second
		if r.Next > ceil || r.Next < ceil*99/100 {
			t.Errorf("backoff %d = %v, want just under %v (cap = report interval)", i, r.Next, ceil)
		}
	}
	applied := media.Applied()
	if len(applied) < 8 {
		t.Fatalf("media applied %d times, want every round", len(applied))
	}
	for _, a := range applied {
		if a.GetMode() != mamoriv1.Mode_MODE_ENFORCE {
			t.Fatalf("media got %v while offline, want the cached ENFORCE", a)
		}
	}
}

func TestFailover(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	cfg := baseConfig(dir, &daemontest.Spool{})
	cfg.Servers = []string{closedAddr(t), s.addr}
	h := runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 2 })
	for _, r := range h.rounds {
		if r.Err != nil || r.Server != s.addr {
			t.Errorf("round: err %v server %s", r.Err, r.Server)
		}
	}
}

func TestNewPolicyPersistedBeforeApplied(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	p2 := policy.Default()
	p2.Version = 2
	p2.Controls["media"] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true}
	s.mu.Lock()
	s.policy = p2
	s.mu.Unlock()
	var bad []string
	media := &controltest.Control{ControlName: "media", ApplyFunc: func(ctx context.Context, cp *mamoriv1.ControlPolicy) error {
		if cp.GetMode() == mamoriv1.Mode_MODE_ENFORCE {
			if saved, err := dir.LoadPolicy(); err != nil || saved.Version != 2 {
				bad = append(bad, fmt.Sprintf("applied v2 while policy.pb holds %v (%v)", saved.GetVersion(), err))
			}
		}
		return nil
	}}
	cfg := baseConfig(dir, &daemontest.Spool{})
	cfg.Controls = []control.Control{media}
	h := runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 2 })
	if len(bad) > 0 {
		t.Error(bad)
	}
	if h.rounds[0].PolicyVersion != 2 || s.Reports()[1].PolicyVersion != 2 {
		t.Errorf("policy version after round: %d, reported next: %d", h.rounds[0].PolicyVersion, s.Reports()[1].PolicyVersion)
	}
	var enforced bool
	for _, a := range media.Applied() {
		enforced = enforced || a.GetMode() == mamoriv1.Mode_MODE_ENFORCE
	}
	if !enforced {
		t.Error("new policy never applied")
	}
}

func TestRevokedKeepsEnforcing(t *testing.T) {
	s := startServer(t)
	dir := enrolled(t, s)
	s.reportFn = func(*mamoriv1.ReportRequest) ([]string, error) {
		return nil, status.Error(codes.PermissionDenied, "device revoked")
	}
	sp := &daemontest.Spool{}
	media := &controltest.Control{ControlName: "media"}
	cfg := baseConfig(dir, sp)
	cfg.Controls = []control.Control{media}
	runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 3 })
	var refused int
	for _, e := range sp.Events() {
		if e.Kind == daemon.KindReportRefused {
			refused++
			if e.Attributes["code"] != "PermissionDenied" {
				t.Errorf("attributes %v", e.Attributes)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d report_refused events, want 1 per refusal streak", refused)
	}
	if len(media.Applied()) < 3 {
		t.Errorf("controls applied %d times, want every round", len(media.Applied()))
	}
}

func TestRunEnrolsWhenConfigured(t *testing.T) {
	s := startServer(t)
	dir, _ := state.Open(t.TempDir())
	cfg := baseConfig(dir, &daemontest.Spool{})
	cfg.Servers, cfg.Token, cfg.CAFingerprint = []string{s.addr}, goodToken, s.ca.Fingerprint()
	h := runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 1 })
	if h.rounds[0].Err != nil {
		t.Fatal(h.rounds[0].Err)
	}
	if _, err := dir.LoadIdentity(); err != nil {
		t.Error(err)
	}
}

// A server that answers busy (admission control) is asked again after
// the delay it gives, with the same CSR (the server counts a retried
// enrolment's token use once), until it enrols the terminal.
func TestEnrolBusyServerRetriesAfterHint(t *testing.T) {
	s := startServer(t)
	s.busy = 3
	dir, _ := state.Open(t.TempDir())
	cfg := baseConfig(dir, &daemontest.Spool{})
	cfg.Servers, cfg.Token, cfg.CAFingerprint = []string{s.addr}, goodToken, s.ca.Fingerprint()
	h := runDaemon(t, cfg, func(h *harness) bool { return len(h.rounds) == 1 })
	if h.rounds[0].Err != nil {
		t.Fatal(h.rounds[0].Err)
	}
	if len(h.sleeps) < 3 {
		t.Fatalf("slept %v, want three waits before the enrolment went through", h.sleeps)
	}
	for _, d := range h.sleeps[:3] {
		if d < 3*time.Second || d > 6*time.Second {
			t.Errorf("waited %v after a busy answer, want the 3 s hint plus at most as much jitter", d)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.csrs) != 4 {
		t.Fatalf("%d enrolment calls, want 4", len(s.csrs))
	}
	for i, c := range s.csrs[1:] {
		if string(c) != string(s.csrs[0]) {
			t.Errorf("retry %d sent another CSR: a retry must reuse the key", i+1)
		}
	}
}

func TestNotEnrolledRetries(t *testing.T) {
	dir, _ := state.Open(t.TempDir())
	h := runDaemon(t, baseConfig(dir, &daemontest.Spool{}), func(h *harness) bool { return len(h.rounds) == 2 })
	if !errors.Is(h.rounds[0].Err, state.ErrNotEnrolled) {
		t.Errorf("err = %v, want ErrNotEnrolled", h.rounds[0].Err)
	}
}
