package isolation

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// fakeSystem scripts what the kernel would say. It never opens a socket.
type fakeSystem struct {
	mu     sync.Mutex
	rts    []Route
	ifcs   []string
	reach  map[string]error // dial result per address; absent: time-out
	fw     *fakeFirewall
	noFire bool
	fwd    Forwarding
}

var errRefused = errors.New("connection refused")

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (f *fakeSystem) dial(ctx context.Context, network, addr string, mark uint32) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err, ok := f.reach[addr]
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: timeoutErr{}}
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func (f *fakeSystem) listenICMP(bool, uint32) (net.PacketConn, error) { return nil, errNotObserved }
func (f *fakeSystem) routes() ([]Route, error)                        { f.mu.Lock(); defer f.mu.Unlock(); return f.rts, nil }
func (f *fakeSystem) interfaces() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ifcs, nil
}
func (f *fakeSystem) classify(err error) string {
	if errors.Is(err, errRefused) {
		return OutcomeRefused
	}
	return OutcomeError
}
func (f *fakeSystem) firewall() firewall {
	if f.noFire {
		return nil
	}
	return f.fw
}
func (f *fakeSystem) defaultResolvConf() string { return os.DevNull }
func (f *fakeSystem) forwarding() (Forwarding, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fwd, nil
}
func (f *fakeSystem) disableForwarding(which Forwarding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fwd.IPv4 = f.fwd.IPv4 && !which.IPv4
	f.fwd.IPv6 = f.fwd.IPv6 && !which.IPv6
	return nil
}

func (f *fakeSystem) setReach(addr string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reach[addr] = err
}

// fakeFirewall holds a table as Items.
type fakeFirewall struct {
	mu      sync.Mutex
	table   []Item // nil: absent
	applies int
	tracked []Session
	local   []netip.Addr
}

func (f *fakeFirewall) items(rules []Rule) []Item {
	var out []Item
	for _, r := range rules {
		out = append(out, Item{Chain: r.Chain, Tag: r.String(), Body: r.String()})
	}
	return out
}
func (f *fakeFirewall) apply(ctx context.Context, rules []Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table = f.items(rules)
	f.applies++
	return nil
}
func (f *fakeFirewall) live(ctx context.Context) (bool, []Item, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.table != nil, append([]Item(nil), f.table...), 7, nil
}
func (f *fakeFirewall) sessions(ctx context.Context) ([]Session, []netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tracked), f.local, nil
}
func (f *fakeFirewall) cut(ctx context.Context, ss []Session) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, x := range ss {
		if i := slices.IndexFunc(f.tracked, func(y Session) bool { return y.String() == x.String() }); i >= 0 {
			f.tracked = slices.Delete(f.tracked, i, i+1)
			n++
		}
	}
	return n, nil
}
func (f *fakeFirewall) remove(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	had := f.table != nil
	f.table = nil
	return had, nil
}

func newFake() *fakeSystem {
	return &fakeSystem{
		rts:   []Route{{Iface: "eth0", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.20.1.1"), Flags: rtfUp | rtfGateway}},
		ifcs:  []string{"lo", "eth0"},
		reach: map[string]error{},
		fw:    &fakeFirewall{},
	}
}

var testSettings = map[string]string{
	SettingAllowedNetworks: "10.20.0.0/16",
	SettingCanaries:        "172.31.0.1:443, 172.31.0.2:80",
}

func pol(mode mamoriv1.Mode, s map[string]string) *mamoriv1.ControlPolicy {
	return &mamoriv1.ControlPolicy{Mode: mode, Settings: s}
}

func mustStatus(t *testing.T, c *Control) *mamoriv1.ControlStatus {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestControlFlow(t *testing.T) {
	sys := newFake()
	em := &controltest.Emitter{}
	c := newControl(Options{Emitter: em, Servers: []string{"10.99.0.1:7443"}}, sys, nil)
	ctx := t.Context()
	want := func(st *mamoriv1.ControlStatus, state mamoriv1.ControlState, detail string) {
		t.Helper()
		if st.State != state || !strings.Contains(st.Detail, detail) {
			t.Errorf("got %v %q, want %v containing %q", st.State, st.Detail, state, detail)
		}
	}

	// Not in the policy.
	if err := c.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE, "does not name")

	// Monitor, a canary reachable: FAILED all the same (a proven
	// violation, marked for the server), one event, no repeat.
	sys.setReach("172.31.0.1:443", nil)
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Fatal(err)
	}
	st := mustStatus(t, c)
	want(st, mamoriv1.ControlState_CONTROL_STATE_FAILED, "this terminal can reach 172.31.0.1:443")
	if v := st.Evidence[policy.EvidenceViolation]; !strings.HasPrefix(v, "this terminal can reach 172.31.0.1:443") {
		t.Errorf("monitor: evidence %s = %q", policy.EvidenceViolation, v)
	}
	// The device page renders the detail through i18n.StatusDetail.
	for lang, w := range map[i18n.Lang]string{i18n.English: "this terminal can reach 172.31.0.1:443", i18n.Japanese: "この端末は別のネットワーク層のカナリア 172.31.0.1:443 に到達できます"} {
		if got := i18n.StatusDetail(i18n.NewPrinter(lang), st.Detail, st.DetailId, st.DetailArgs, st.DetailParts); !strings.Contains(got, w) {
			t.Errorf("device page (%v): %q, want %q", lang, got, w)
		}
	}
	if st.Evidence["canary 172.31.0.2:80"] != "timeout: no answer within 2s" || !strings.HasPrefix(st.Evidence["canary 172.31.0.1:443"], "reachable") {
		t.Errorf("evidence %v", st.Evidence)
	}
	if ev := em.Events(); len(ev) != 1 || ev[0].Kind != KindFinding || ev[0].Attrs["finding"] != "canary 172.31.0.1:443" {
		t.Errorf("events %v", ev)
	}
	mustStatus(t, c)
	if ev := em.Events(); len(ev) != 0 {
		t.Errorf("repeated: %v", ev)
	}
	if sys.fw.applies != 0 {
		t.Error("monitor mode applied a ruleset")
	}

	// Enforce: the canary is still reachable (the fake firewall blocks
	// nothing): FAILED.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, testSettings)); err != nil {
		t.Fatal(err)
	}
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_FAILED, "this terminal can reach 172.31.0.1:443")
	// Refused: packets get out; DEGRADED, not ENFORCED.
	sys.setReach("172.31.0.1:443", errRefused)
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "refused the connection")
	delete(sys.reach, "172.31.0.1:443")
	st = mustStatus(t, c)
	want(st, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "2 of 2 canaries unreachable")
	if st.Evidence["ruleset"] != "present, unchanged, 14 rules" || st.Evidence["ruleset.dropped_packets"] != "7" {
		t.Errorf("evidence %v", st.Evidence)
	}
	if ev := em.Events(); len(kindsOf(ev, KindRulesetApplied)) != 1 || len(kindsOf(ev, KindFindingCleared)) != 1 {
		t.Errorf("events %v", ev)
	}
	// Apply again: idempotent, no second apply.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, testSettings)); err != nil || sys.fw.applies != 1 {
		t.Errorf("re-apply without drift: %v, %d applies", err, sys.fw.applies)
	}

	// Drift: a rule deleted by hand.
	sys.fw.mu.Lock()
	gone := sys.fw.table[3]
	sys.fw.table = append(sys.fw.table[:3:3], sys.fw.table[4:]...)
	sys.fw.mu.Unlock()
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_DEGRADED, `missing rule "`+gone.Tag)
	if ev := em.Events(); len(ev) != 1 || ev[0].Attrs["finding"] != "ruleset altered" {
		t.Errorf("drift events %v", ev)
	}
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, testSettings)); err != nil || sys.fw.applies != 2 {
		t.Fatalf("repair: %v, %d applies", err, sys.fw.applies)
	}
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "has been re-applied")
	if ev := em.Events(); len(kindsOf(ev, KindRulesetReapplied)) != 1 || len(kindsOf(ev, KindFinding)) != 0 {
		t.Errorf("repair events %v", ev)
	}
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")
	if ev := em.Events(); len(kindsOf(ev, KindFindingCleared)) != 1 {
		t.Errorf("events after repair %v", ev)
	}

	// Bad settings: refused, the ruleset stays.
	err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR, map[string]string{SettingAllowedNetworks: "0.0.0.0/0"}))
	if err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("bad settings: %v", err)
	}
	want(mustStatus(t, c), mamoriv1.ControlState_CONTROL_STATE_FAILED, "would allow every address")
	if present, _, _, _ := sys.fw.live(ctx); !present {
		t.Error("bad settings removed the ruleset")
	}

	// Monitor: the table goes.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Fatal(err)
	}
	if present, _, _, _ := sys.fw.live(ctx); present {
		t.Error("monitor mode kept the ruleset")
	}
	if ev := em.Events(); len(kindsOf(ev, KindRulesetRemoved)) != 1 {
		t.Errorf("events %v", ev)
	}
}

func TestControlEnforceNeedsServer(t *testing.T) {
	c := newControl(Options{}, newFake(), nil)
	err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_ENFORCE, testSettings))
	if err == nil || !strings.Contains(err.Error(), "cut itself off") {
		t.Errorf("err %v", err)
	}
	s := map[string]string{SettingServers: "10.99.0.1:7443", SettingCanaries: "172.31.0.1:443"}
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_ENFORCE, s)); err != nil {
		t.Errorf("server from the settings: %v", err)
	}
}

func TestControlNoFirewall(t *testing.T) {
	sys := newFake()
	sys.noFire = true
	c := newControl(Options{Servers: []string{"10.99.0.1:7443"}}, sys, nil)
	err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_ENFORCE, testSettings))
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("enforce without a firewall: %v", err)
	}
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Errorf("monitor without a firewall: %v", err)
	}
}

func TestControlUnsupported(t *testing.T) {
	c := newControl(Options{}, nil, errors.ErrUnsupported)
	if err := c.Apply(t.Context(), nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Error(err)
	}
	if _, err := c.Status(t.Context()); !errors.Is(err, errors.ErrUnsupported) {
		t.Error(err)
	}
}

func TestControlInterfaces(t *testing.T) {
	sys := newFake()
	em := &controltest.Emitter{}
	c := newControl(Options{Emitter: em}, sys, nil)
	s := map[string]string{SettingAllowedNetworks: "10.20.0.0/16", SettingCanaries: "172.31.0.1:443",
		SettingNoNewInterfaces: "true", SettingAllowedInterfaces: "eth* wl*"}
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_MONITOR, s)); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, c); st.Detail != "monitoring: no findings (1 of 1 canaries unreachable)" || st.Evidence["interfaces.unexpected"] != "none" {
		t.Errorf("baseline: %q %v", st.Detail, st.Evidence)
	}
	sys.mu.Lock()
	sys.ifcs = append(sys.ifcs, "usb0", "wlan0")
	sys.mu.Unlock()
	st := mustStatus(t, c)
	if !strings.Contains(st.Detail, "usb0 is not in allowed_interfaces") || !strings.Contains(st.Detail, "wlan0 appeared after") ||
		st.Evidence["interfaces.unexpected"] != "usb0, wlan0" {
		t.Errorf("new interfaces: %q %v", st.Detail, st.Evidence)
	}
	if ev := em.Events(); len(ev) != 2 {
		t.Errorf("events %v", ev)
	}
}

// Emitting may fail (spool full): the finding is emitted again later.
func TestControlEmitRetry(t *testing.T) {
	sys := newFake()
	sys.setReach("172.31.0.1:443", nil)
	em := &controltest.Emitter{}
	em.SetErr(errors.New("spool full"))
	c := newControl(Options{Emitter: em}, sys, nil)
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, c)
	em.SetErr(nil)
	mustStatus(t, c)
	if ev := em.Events(); len(ev) != 1 || ev[0].Kind != KindFinding {
		t.Errorf("events %v", ev)
	}
}

func TestFindingsAndDecide(t *testing.T) {
	s, err := ParseSettings(map[string]string{SettingAllowedNetworks: "10.20.0.0/16", SettingCanaries: "172.31.0.1:443", SettingForbiddenDNSName: "www.example.jp"})
	if err != nil {
		t.Fatal(err)
	}
	target := s.Canaries[0]
	okRuleset := &RulesetObservation{Present: true, Rules: 11}
	dflt := func(gw string) Route {
		r := Route{Iface: "eth0", Dst: netip.MustParsePrefix("0.0.0.0/0"), Flags: rtfUp}
		if gw != "" {
			r.Gateway, r.Flags = netip.MustParseAddr(gw), rtfUp|rtfGateway
		}
		return r
	}
	base := func() Observation {
		return Observation{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: s, Routes: []Route{dflt("10.20.1.1")},
			Canaries: []CanaryResult{{target, OutcomeTimeout, ""}}, DNS: &DNSResult{}, Ruleset: okRuleset}
	}
	tests := []struct {
		name   string
		change func(o *Observation)
		state  mamoriv1.ControlState
		detail string
	}{
		{"all good", func(o *Observation) {}, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "ruleset in force"},
		{"monitor all good", func(o *Observation) { o.Mode, o.Ruleset = mamoriv1.Mode_MODE_MONITOR, nil }, mamoriv1.ControlState_CONTROL_STATE_MONITORING, "no findings"},
		{"monitor canary reachable", func(o *Observation) {
			o.Mode, o.Ruleset = mamoriv1.Mode_MODE_MONITOR, nil
			o.Canaries[0].Outcome = OutcomeReachable
		}, mamoriv1.ControlState_CONTROL_STATE_FAILED, "this terminal can reach 172.31.0.1:443"},
		{"monitor canary refused", func(o *Observation) {
			o.Mode, o.Ruleset = mamoriv1.Mode_MODE_MONITOR, nil
			o.Canaries[0].Outcome = OutcomeRefused
		}, mamoriv1.ControlState_CONTROL_STATE_MONITORING, "refused"},
		{"canary reachable", func(o *Observation) { o.Canaries[0].Outcome = OutcomeReachable }, mamoriv1.ControlState_CONTROL_STATE_FAILED, "this terminal can reach 172.31.0.1:443, a canary in another tier"},
		{"canary refused", func(o *Observation) { o.Canaries[0].Outcome = OutcomeRefused }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "refused"},
		{"canary error", func(o *Observation) { o.Canaries[0].Outcome = OutcomeError }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "could not be checked"},
		{"canary blocked", func(o *Observation) { o.Canaries[0].Outcome = OutcomeBlocked }, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"canary unresolved", func(o *Observation) { o.Canaries[0].Outcome = OutcomeUnresolved }, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"canary unreachable", func(o *Observation) { o.Canaries[0].Outcome = OutcomeUnreachable }, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"no canaries", func(o *Observation) { o.Settings.Canaries, o.Canaries = nil, nil }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "no canaries"},
		{"dns resolves", func(o *Observation) {
			o.DNS = &DNSResult{Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.7")}, Server: netip.MustParseAddrPort("10.20.0.53:53")}
		}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "www.example.jp resolves (to 203.0.113.7, answered by 10.20.0.53:53)"},
		{"dns unanswered", func(o *Observation) { o.DNS = &DNSResult{Err: errors.New("timeout")} }, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"default route elsewhere", func(o *Observation) { o.Routes = []Route{dflt("192.168.1.1")} }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "gateway is outside the allowed networks"},
		{"default route no gateway", func(o *Observation) { o.Routes = []Route{dflt("")} }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "has no gateway"},
		{"route to other network", func(o *Observation) {
			o.Routes = append(o.Routes, Route{Iface: "usb0", Dst: netip.MustParsePrefix("192.168.42.0/24"), Flags: rtfUp})
		}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "route 192.168.42.0/24 dev usb0 leads to a network that is not allowed"},
		{"route to server host", func(o *Observation) {
			o.AgentServers = []netip.AddrPort{netip.MustParseAddrPort("172.16.9.1:7443")}
			o.Routes = append(o.Routes, Route{Iface: "eth0", Dst: netip.MustParsePrefix("172.16.9.1/32"), Gateway: netip.MustParseAddr("10.20.1.1"), Flags: rtfUp | rtfGateway})
		}, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"reject and link-local routes", func(o *Observation) {
			o.Routes = append(o.Routes, Route{Iface: "*", Dst: netip.MustParsePrefix("192.168.0.0/16"), Flags: rtfUp | rtfReject},
				Route{Iface: "eth0", Dst: netip.MustParsePrefix("fe80::/64"), Flags: rtfUp},
				Route{Iface: "eth0", Dst: netip.MustParsePrefix("169.254.0.0/16"), Flags: rtfUp})
		}, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"routes unreadable", func(o *Observation) { o.RoutesErr = os.ErrPermission }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "cannot read the routing table"},
		{"routes not observed", func(o *Observation) { o.RoutesErr = errNotObserved }, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"ruleset missing", func(o *Observation) {
			o.Ruleset = &RulesetObservation{Diffs: []string{"table inet mamori missing"}}
		}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "table inet mamori missing"},
		{"ruleset unreadable", func(o *Observation) { o.Ruleset = &RulesetObservation{Err: os.ErrPermission} }, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "cannot read table"},
		{"violation first", func(o *Observation) {
			o.Routes = []Route{dflt("")}
			o.Canaries[0].Outcome = OutcomeReachable
		}, mamoriv1.ControlState_CONTROL_STATE_FAILED, "this terminal can reach 172.31.0.1:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.change(&o)
			st, d := Decide(o, Findings(o))
			detail := d.English()
			if st != tt.state || !strings.Contains(detail, tt.detail) {
				t.Errorf("got %v %q, want %v containing %q", st, detail, tt.state, tt.detail)
			}
			if tt.name == "violation first" && (d.ID != "detail.problems" || !strings.HasPrefix(d.Args[1], "this terminal can reach")) {
				t.Errorf("the violation is not named first: %q", detail)
			}
			// A list of findings carries each as its own message, in order.
			if d.ID == "detail.problems" || d.ID == "detail.isolation.monitoring-findings" {
				fs := Findings(o)
				if len(d.Parts) != len(fs) || d.Parts[0].ID != fs[0].Message.ID {
					t.Errorf("%d parts for %d findings (first %v)", len(d.Parts), len(fs), d.Parts)
				}
			}
		})
	}
}

// Evidence stays within what the server accepts: 64 keys, 4096-byte values,
// one line each.
func TestEvidenceBounded(t *testing.T) {
	var cs []string
	for i := range MaxCanaries {
		cs = append(cs, strings.Repeat("a", 60)+"."+strings.Repeat("b", 60)+"."+strings.Repeat("c", 50)+itoa(i)+".jp:80")
	}
	s, err := ParseSettings(map[string]string{SettingCanaries: strings.Join(cs, ","), SettingForbiddenDNSName: "www.example.jp", SettingAllowedInterfaces: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	o := Observation{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: s, DNS: &DNSResult{Err: errors.New(strings.Repeat("line\n", 2000))},
		Ruleset: &RulesetObservation{Present: true, Diffs: []string{strings.Repeat("d", 9000)}}, Notes: []string{strings.Repeat("n", 5000)}}
	for _, t := range s.Canaries {
		o.Canaries = append(o.Canaries, CanaryResult{t, OutcomeError, strings.Repeat("é", 3000)})
	}
	for i := range 500 {
		o.Routes = append(o.Routes, Route{Iface: "eth0", Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i / 256), byte(i)}), 32), Flags: rtfUp})
		o.Interfaces = append(o.Interfaces, "usb"+itoa(i))
	}
	fs := Findings(o)
	ev := Evidence(o, fs)
	if len(ev) > 64 {
		t.Errorf("%d evidence keys", len(ev))
	}
	for k, v := range ev {
		if len(k) > 256 || len(v) > 4096 || !utf8.ValidString(v) || strings.ContainsAny(v, "\n\r") {
			t.Errorf("evidence %q: %d bytes, valid %v", k, len(v), utf8.ValidString(v))
		}
	}
	_, d := Decide(o, fs)
	if detail := d.English(); len(detail) > 1000 || !utf8.ValidString(detail) {
		t.Errorf("detail %d bytes", len(detail))
	}
	// One finding alone is its own message, bounded the same way.
	_, d = Decide(o, fs[:1])
	if detail := d.English(); len(detail) > 1000 || !utf8.ValidString(detail) || d.ID != fs[0].Message.ID {
		t.Errorf("one finding: %s, %d bytes", d.ID, len(detail))
	}
	if len(fs) > 2*MaxCanaries+4*maxFindingsPerKind+8 {
		t.Errorf("%d findings", len(fs))
	}
}

func TestParseDNSAnswer(t *testing.T) {
	name := dnsmessage.MustNewName("www.example.jp.")
	alias := dnsmessage.MustNewName("cdn.example.net.")
	reply := func(id uint16, rcode dnsmessage.RCode, answers ...dnsmessage.Resource) []byte {
		m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, Response: true, RCode: rcode},
			Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}, Answers: answers}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hdr := func(n dnsmessage.Name, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: n, Type: typ, Class: dnsmessage.ClassINET}
	}
	cname := dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: alias}}
	a := dnsmessage.Resource{Header: hdr(alias, dnsmessage.TypeA), Body: &dnsmessage.AResource{A: [4]byte{203, 0, 113, 7}}}
	aaaa := dnsmessage.Resource{Header: hdr(alias, dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::7").As16()}}

	got, err := ParseDNSAnswer(reply(7, dnsmessage.RCodeSuccess, cname, a, aaaa), 7)
	if err != nil || len(got) != 2 || got[0].String() != "203.0.113.7" || got[1].String() != "2001:db8::7" {
		t.Errorf("answer: %v %v", got, err)
	}
	if got, err := ParseDNSAnswer(reply(7, dnsmessage.RCodeNameError), 7); err != nil || len(got) != 0 {
		t.Errorf("nxdomain: %v %v", got, err)
	}
	if _, err := ParseDNSAnswer(reply(7, dnsmessage.RCodeServerFailure), 7); err == nil {
		t.Error("servfail: no error")
	}
	if _, err := ParseDNSAnswer(reply(8, dnsmessage.RCodeSuccess, a), 7); err == nil {
		t.Error("wrong id: no error")
	}
	if _, err := ParseDNSAnswer([]byte{0, 7, 0x80}, 7); err == nil {
		t.Error("truncated: no error")
	}
	q, err := dnsQuery(9, "www.example.jp", dnsmessage.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDNSAnswer(q, 9); err == nil {
		t.Error("a query is not an answer")
	}
}

func kindsOf(evs []controltest.Event, kind string) []controltest.Event {
	var out []controltest.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestControlForwarding(t *testing.T) {
	sys := newFake()
	sys.fwd = Forwarding{IPv4: true, IPv6: true}
	em := &controltest.Emitter{}
	c := newControl(Options{Emitter: em, Servers: []string{"10.20.9.1:7443"}}, sys, nil)
	ctx := t.Context()
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Fatal(err)
	}
	st := mustStatus(t, c)
	if !strings.Contains(st.Detail, "IP forwarding is on (IPv4 and IPv6)") || st.Evidence["forwarding"] != "on (IPv4 and IPv6)" {
		t.Errorf("monitor: %q %v", st.Detail, st.Evidence["forwarding"])
	}
	if sys.fwd != (Forwarding{IPv4: true, IPv6: true}) {
		t.Errorf("monitor mode changed forwarding: %+v", sys.fwd)
	}
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, testSettings)); err != nil {
		t.Fatal(err)
	}
	if sys.fwd.On() {
		t.Errorf("enforce left forwarding on: %+v", sys.fwd)
	}
	if off := kindsOf(em.Events(), KindForwardingOff); len(off) != 1 || off[0].Attrs["was"] != "IPv4 and IPv6" {
		t.Errorf("forwarding_disabled events %v", off)
	}
	if st := mustStatus(t, c); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || st.Evidence["forwarding"] != "off" {
		t.Errorf("enforce: %v %q %v", st.State, st.Detail, st.Evidence["forwarding"])
	}
	// Allowed by the policy: left alone, no finding, forwarded traffic
	// limited by the forward chain.
	allow := maps.Clone(testSettings)
	allow[SettingAllowForwarding] = "true"
	sys.fwd = Forwarding{IPv4: true}
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, allow)); err != nil {
		t.Fatal(err)
	}
	st = mustStatus(t, c)
	if !sys.fwd.IPv4 || st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || !strings.HasPrefix(st.Evidence["forwarding"], "on (IPv4), allowed") {
		t.Errorf("allowed forwarding: %+v %v %q %q", sys.fwd, st.State, st.Detail, st.Evidence["forwarding"])
	}
}

// A state file that cannot be read changes nothing at boot and is named in
// the status; the baseline is then taken anew.
func TestStateFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+StateFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := Boot(t.Context(), Options{StateDir: dir}); err == nil || res.Rules != 0 {
		t.Errorf("boot with a torn state file: %+v %v", res, err)
	}
	c := newControl(Options{StateDir: dir, Servers: []string{"10.20.9.1:7443"}}, newFake(), nil)
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_MONITOR, testSettings)); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, c); !strings.Contains(st.Evidence["notes"], "state "+StateFile) {
		t.Errorf("notes %q", st.Evidence["notes"])
	}
	// Enforce writes a good one.
	if err := c.Apply(t.Context(), pol(mamoriv1.Mode_MODE_ENFORCE, testSettings)); err != nil {
		t.Fatal(err)
	}
	if st, err := loadState(dir); err != nil || len(st.Rules) == 0 {
		t.Errorf("after enforce: %+v %v", st, err)
	}
	if st := mustStatus(t, c); strings.Contains(st.Evidence["notes"], "state ") {
		t.Errorf("note stays after a good save: %q", st.Evidence["notes"])
	}
}
