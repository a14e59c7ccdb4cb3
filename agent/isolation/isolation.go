// Package isolation is the "isolation" control: it proves, and in enforce
// mode makes sure, that a My Number tier terminal cannot reach the other
// tiers (LGWAN, Internet).
//
// Every round it observes:
//
//   - each canary (a host:port in another tier) by a TCP connect with a
//     short time-out: a connect that succeeds is a violation;
//   - the forbidden DNS name, asked directly of the nameservers in
//     resolv.conf: an answer with addresses is a finding;
//   - the routes: a default route through a gateway outside the allowed
//     networks, or any route towards a network that is not allowed, is a
//     finding;
//   - the network interfaces: one outside allowed_interfaces, or one that
//     appeared after the first observation with no_new_interfaces, is a
//     finding (a USB tethering or Wi-Fi adapter);
//   - IP forwarding: a terminal that routes for others (a VM or container
//     behind it) is a way around the tier boundary, a finding unless the
//     policy allows forwarding.
//
// In enforce mode it keeps an nftables table of its own, inet "mamori"
// (netlink, no nft binary), that lets through loopback, established and
// related traffic, IPv6 neighbour discovery, the allowed networks and
// services and the mamori servers, and counts and drops everything else;
// its forward chain drops what is routed through the terminal (or, with
// allow_forwarding, lets it reach only the allowed networks and services),
// and IP forwarding is switched off unless the policy allows it.
// The table is compared with the desired one every round: a rule changed or
// deleted by hand is reported (DEGRADED, an event) and the table replaced
// atomically. In monitor mode, or when the policy drops the control, the
// table is deleted. No other table is ever touched.
//
// The state is ENFORCED only in enforce mode, with the table present and
// unchanged, every canary unreachable and no other finding; FAILED when a
// canary is reachable, in either mode (a proven violation: evidence
// "violation", which the server counts whether or not the control is
// required); MONITORING in monitor mode otherwise (findings as evidence);
// DEGRADED for any other finding. New findings are emitted as "finding"
// events once, and "finding_cleared" when they go away.
//
// Decisions live in this file and its pure siblings (settings, routes,
// rules, probe); isolation_linux.go and isolation_windows.go only make
// system calls. Linux does everything; Windows checks canaries, DNS and
// interfaces and cannot enforce; other systems return errors.ErrUnsupported.
package isolation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Event kinds this control emits (besides the Set's state_changed).
const (
	KindFinding          = "finding"           // attrs: finding, detail
	KindFindingCleared   = "finding_cleared"   // attrs: finding
	KindRulesetApplied   = "ruleset_applied"   // attrs: rules
	KindRulesetReapplied = "ruleset_reapplied" // attrs: differences
	KindRulesetRemoved   = "ruleset_removed"
	KindForwardingOff    = "forwarding_disabled" // attrs: was
	KindSessionsCut      = "sessions_cut"        // attrs: count, sessions
)

// Options configures the control.
type Options struct {
	// Emitter receives the control's events. Nil drops them.
	Emitter control.Emitter
	// Log receives failures. Nil discards.
	Log *slog.Logger
	// Servers are the agent's own server addresses, "host:port" as in the
	// agent config. They are always allowed in enforce mode; names are
	// resolved with the system resolver at each Apply.
	Servers []string
	// Netns is the path of the network namespace to observe and enforce in
	// (e.g. /run/netns/NAME). Empty: the agent's own. Linux only.
	Netns string
	// Proc is the procfs root. Empty means /proc.
	Proc string
	// ResolvConf lists the nameservers the DNS check asks. Empty means
	// /etc/resolv.conf on Linux, the system resolver on Windows.
	ResolvConf string
	// StateDir keeps StateFile: the ruleset in force, for Boot, and the
	// interface baseline. Empty: nothing is kept (the baseline is taken
	// again at each start, and nothing is enforced between boot and the
	// agent's start).
	StateDir string
}

// system is what differs per OS: system calls only.
type system interface {
	// dial connects from where the control observes and enforces (the
	// network namespace on Linux). addr is an address literal with a port.
	// A non-zero mark is set on the socket (SO_MARK): the network proof.
	dial(ctx context.Context, network, addr string, mark uint32) (net.Conn, error)
	// routes returns the IPv4 and IPv6 routes, or errNotObserved.
	routes() ([]Route, error)
	// interfaces returns the names of the network interfaces.
	interfaces() ([]string, error)
	// listenICMP opens a socket for ICMP (v6: ICMPv6) echo, where dial
	// would, or returns errNotObserved.
	listenICMP(v6 bool, mark uint32) (net.PacketConn, error)
	// classify names the outcome of a failed connect.
	classify(err error) string
	// firewall is nil where mamori cannot enforce.
	firewall() firewall
	// defaultResolvConf is where the nameservers are listed; "" means ask
	// the system resolver instead.
	defaultResolvConf() string
	// forwarding reports whether the kernel forwards IPv4 and IPv6
	// packets, or errNotObserved.
	forwarding() (Forwarding, error)
	// disableForwarding switches forwarding off for the families set.
	disableForwarding(which Forwarding) error
}

// Forwarding is the kernel's IP forwarding switches.
type Forwarding struct{ IPv4, IPv6 bool }

// On is whether either family forwards.
func (f Forwarding) On() bool { return f.IPv4 || f.IPv6 }

func (f Forwarding) String() string {
	switch {
	case f.IPv4 && f.IPv6:
		return "IPv4 and IPv6"
	case f.IPv4:
		return "IPv4"
	case f.IPv6:
		return "IPv6"
	}
	return "off"
}

// firewall drives mamori's own table.
type firewall interface {
	// apply replaces the table with rules, atomically.
	apply(ctx context.Context, rules []Rule) error
	// items is the table as the kernel would hold it after apply(rules).
	items(rules []Rule) []Item
	// live reads the table: whether it exists, its chains and rules, and
	// the packets the drop rules counted.
	live(ctx context.Context) (present bool, items []Item, dropped uint64, err error)
	// remove deletes the table, reporting whether it existed.
	remove(ctx context.Context) (bool, error)
	// sessions lists the connections the kernel tracks, and the
	// terminal's own addresses.
	sessions(ctx context.Context) ([]Session, []netip.Addr, error)
	// cut deletes the tracking of ss, so that their next packet is new to
	// the ruleset and dropped; it returns how many it deleted (entries
	// already gone do not count).
	cut(ctx context.Context, ss []Session) (int, error)
}

// errNotObserved marks a check this OS does not do.
var errNotObserved = errors.New("not observed on this system")

// Control is the isolation control. It is safe for concurrent use.
type Control struct {
	o      Options
	log    *slog.Logger
	sys    system
	sysErr error

	mu            sync.Mutex
	mode          mamoriv1.Mode
	inPolicy      bool
	settings      Settings
	settingsErr   error
	agentServers  []netip.AddrPort
	resolved      map[string][]netip.AddrPort // last good resolution of Options.Servers names
	notes         []string
	applied       []Rule // the ruleset mamori last put in place; nil: none
	cutPending    bool   // the table was written; forbidden sessions not yet cut
	repaired      []string
	baseline      map[string]bool
	reported      map[string]string // finding key → detail, as emitted
	lastNoNewIfcs bool
	persistErr    error
	diskRules     bool // StateFile holds a ruleset
}

// New returns the control.
func New(o Options) *Control {
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	sys, err := newSystem(o)
	return newControl(o, sys, err)
}

func newControl(o Options, sys system, sysErr error) *Control {
	c := &Control{o: o, log: o.Log, sys: sys, sysErr: sysErr,
		reported: map[string]string{}, resolved: map[string][]netip.AddrPort{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.sysErr == nil && c.o.ResolvConf == "" {
		c.o.ResolvConf = c.sys.defaultResolvConf()
	}
	// The baseline on disk: interfaces that appeared while the agent was
	// down are compared against it, not taken into a new one.
	st, err := loadState(o.StateDir)
	if err != nil {
		c.persistErr = err
		c.log.Error("isolation state unreadable; the interface baseline is taken anew", "error", err)
	}
	c.diskRules = len(st.Rules) > 0
	if len(st.Baseline) > 0 {
		c.baseline, c.lastNoNewIfcs = map[string]bool{}, true
		for _, n := range st.Baseline {
			c.baseline[n] = true
		}
	}
	return c
}

// Name is "isolation".
func (c *Control) Name() string { return policy.ControlIsolation }

// Apply reads the settings and brings the firewall in line: the table in
// enforce mode (re-applied when it drifted), no table otherwise. Invalid
// settings change nothing — the last good ruleset stays in force — and are
// returned as the error.
func (c *Control) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	if c.sysErr != nil {
		return c.sysErr
	}
	if p == nil {
		c.mu.Lock()
		c.inPolicy, c.settingsErr = false, nil
		c.mu.Unlock()
		return c.removeTable(ctx, "the policy no longer names the isolation control")
	}
	s, err := ParseSettings(p.GetSettings())
	if err != nil {
		c.mu.Lock()
		c.inPolicy, c.mode, c.settingsErr = true, p.GetMode(), err
		c.mu.Unlock()
		return fmt.Errorf("isolation settings (nothing changed; fix the policy): %w", err)
	}
	servers, notes := c.resolveServers(ctx)
	c.mu.Lock()
	c.inPolicy, c.mode, c.settings, c.settingsErr = true, p.GetMode(), s, nil
	c.agentServers, c.notes = servers, notes
	rebase := s.NoNewInterfaces != c.lastNoNewIfcs
	if rebase {
		c.baseline, c.lastNoNewIfcs = nil, s.NoNewInterfaces
	}
	c.mu.Unlock()
	if rebase {
		c.persist(ctx)
	}

	if p.GetMode() != mamoriv1.Mode_MODE_ENFORCE {
		return c.removeTable(ctx, "monitor mode")
	}
	if len(servers)+len(s.Servers) == 0 {
		return errors.New("enforce mode needs the mamori server's address (agent config or the servers setting), or the agent would cut itself off")
	}
	fw := c.sys.firewall()
	if fw == nil {
		return fmt.Errorf("enforce mode: %w here: enforce tier isolation with the OS firewall (e.g. Windows Firewall by GPO); mamori still checks canaries and DNS", errors.ErrUnsupported)
	}
	rules := DesiredRules(s, servers)
	wrote, err := c.applyTable(ctx, fw, rules)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cutPending = c.cutPending || wrote
	pending := c.cutPending
	c.mu.Unlock()
	var errs []error
	if pending {
		if err := c.cutSessions(ctx, fw, s, servers); err != nil {
			errs = append(errs, err)
		} else {
			c.mu.Lock()
			c.cutPending = false
			c.mu.Unlock()
		}
	}
	errs = append(errs, c.enforceForwarding(ctx, s))
	return errors.Join(errs...)
}

// cutSessions ends the tracked connections the ruleset would not have let
// begin (SessionAllowed): the table accepts established traffic, so
// without this a session opened before enforcement, or while the table
// was gone, survives it. It runs whenever the table was written: on
// entering enforce mode, at a policy change and after every repair, and
// again each round until it succeeds.
func (c *Control) cutSessions(ctx context.Context, fw firewall, s Settings, servers []netip.AddrPort) error {
	all, local, err := fw.sessions(ctx)
	if err != nil {
		return fmt.Errorf("list tracked connections (conntrack) to cut those the policy forbids: %w", err)
	}
	bad := forbiddenSessions(s, servers, local, all)
	if len(bad) == 0 {
		return nil
	}
	n, err := fw.cut(ctx, bad)
	if n > 0 {
		c.log.WarnContext(ctx, "isolation: connections the policy forbids were cut", "count", n, "sessions", describeSessions(bad, 8))
		c.emit(ctx, KindSessionsCut, map[string]string{"count": strconv.Itoa(n), "sessions": clipN(describeSessions(bad, 32), 4000)})
	}
	if err != nil {
		return fmt.Errorf("cut %d tracked connections the policy forbids: %w", len(bad)-n, err)
	}
	return nil
}

// applyTable puts rules in place: at once when they are new, or when the
// live table drifted from them. It reports whether it wrote the table.
func (c *Control) applyTable(ctx context.Context, fw firewall, rules []Rule) (bool, error) {
	c.mu.Lock()
	applied := c.applied
	c.mu.Unlock()
	if applied != nil && slices.Equal(applied, rules) {
		present, got, _, err := fw.live(ctx)
		if err != nil {
			return false, fmt.Errorf("read table inet %s: %w", TableName, err)
		}
		diffs := tableDiff(present, fw.items(rules), got)
		if len(diffs) == 0 {
			return false, nil
		}
		if err := fw.apply(ctx, rules); err != nil {
			return false, fmt.Errorf("re-apply table inet %s after it was altered (%s): %w", TableName, strings.Join(diffs, "; "), err)
		}
		c.mu.Lock()
		c.repaired = diffs
		c.mu.Unlock()
		c.log.WarnContext(ctx, "isolation ruleset was altered outside mamori; re-applied", "differences", diffs)
		c.emit(ctx, KindRulesetReapplied, map[string]string{"differences": clipN(strings.Join(diffs, "; "), 4000)})
		return true, nil
	}
	if err := fw.apply(ctx, rules); err != nil {
		return false, fmt.Errorf("apply table inet %s: %w (needs root, or CAP_NET_ADMIN, and nf_tables in the kernel)", TableName, err)
	}
	c.mu.Lock()
	c.applied = rules
	c.mu.Unlock()
	c.persist(ctx)
	c.log.InfoContext(ctx, "isolation ruleset applied", "rules", len(rules))
	c.emit(ctx, KindRulesetApplied, map[string]string{"rules": strconv.Itoa(len(rules))})
	return true, nil
}

// enforceForwarding switches IP forwarding off unless the policy allows
// it. The forward chain drops forwarded packets anyway; this closes the
// path for a moment the table is gone too. Leaving enforce mode does not
// switch it back on.
func (c *Control) enforceForwarding(ctx context.Context, s Settings) error {
	if s.AllowForwarding {
		return nil
	}
	fwd, err := c.sys.forwarding()
	if errors.Is(err, errNotObserved) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read IP forwarding: %w", err)
	}
	if !fwd.On() {
		return nil
	}
	if err := c.sys.disableForwarding(fwd); err != nil {
		return fmt.Errorf("switch IP forwarding (%s) off: %w", fwd, err)
	}
	c.log.WarnContext(ctx, "IP forwarding was on; switched off (the policy does not allow forwarding)", "was", fwd.String())
	c.emit(ctx, KindForwardingOff, map[string]string{"was": fwd.String()})
	return nil
}

func tableDiff(present bool, want, got []Item) []string {
	if !present {
		return []string{"table inet " + TableName + " missing"}
	}
	return Diff(want, got)
}

func (c *Control) removeTable(ctx context.Context, why string) error {
	c.mu.Lock()
	stale := c.applied != nil || c.diskRules
	c.applied, c.repaired, c.cutPending = nil, nil, false
	c.mu.Unlock()
	if stale {
		c.persist(ctx) // no ruleset for the next boot
	}
	fw := c.sys.firewall()
	if fw == nil {
		return nil
	}
	removed, err := fw.remove(ctx)
	if err != nil {
		return fmt.Errorf("remove table inet %s: %w", TableName, err)
	}
	if removed {
		c.log.InfoContext(ctx, "isolation ruleset removed", "why", why)
		c.emit(ctx, KindRulesetRemoved, map[string]string{"why": why})
	}
	return nil
}

// resolveServers turns Options.Servers into addresses. A name that does not
// resolve keeps its last good addresses, and a note says so.
func (c *Control) resolveServers(ctx context.Context) ([]netip.AddrPort, []string) {
	var out []netip.AddrPort
	var notes []string
	for _, s := range c.o.Servers {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			continue
		}
		host, ps, err := net.SplitHostPort(s)
		port, perr := strconv.ParseUint(ps, 10, 16)
		if err != nil || perr != nil || port == 0 {
			notes = append(notes, fmt.Sprintf("server %q is not host:port", clip(s)))
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
		cancel()
		c.mu.Lock()
		if err == nil && len(addrs) > 0 {
			var aps []netip.AddrPort
			for _, a := range addrs {
				aps = append(aps, netip.AddrPortFrom(a.Unmap(), uint16(port)))
			}
			// A stable order, so that round-robin DNS does not look like a
			// policy change every round.
			slices.SortFunc(aps, netip.AddrPort.Compare)
			c.resolved[s] = slices.Compact(aps)
		} else {
			notes = append(notes, fmt.Sprintf("server %s did not resolve (%v); using the last addresses known", clip(s), err))
		}
		out = append(out, c.resolved[s]...)
		c.mu.Unlock()
	}
	return out, notes
}

// Status observes and reports.
func (c *Control) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	if c.sysErr != nil {
		return nil, c.sysErr
	}
	c.mu.Lock()
	inPolicy, mode, s, serr := c.inPolicy, c.mode, c.settings, c.settingsErr
	servers, notes, applied, repaired := c.agentServers, c.notes, c.applied, c.repaired
	c.repaired = nil
	c.mu.Unlock()
	if !inPolicy {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE}
		control.SetDetail(st, "detail.isolation.not-named")
		return st, nil
	}
	if serr != nil {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_FAILED}
		control.SetDetail(st, "detail.isolation.settings", clipN(serr.Error(), 990)) // the error stays English
		return st, nil
	}
	obs := c.observe(ctx, mode, s, servers)
	obs.Notes = append(notes, obs.Notes...) // observe's own (nameservers) were overwritten before
	c.mu.Lock()
	if c.persistErr != nil {
		obs.Notes = append(obs.Notes, "state "+StateFile+": "+c.persistErr.Error())
	}
	c.mu.Unlock()
	if mode == mamoriv1.Mode_MODE_ENFORCE {
		obs.Ruleset = c.observeRuleset(ctx, s, servers, applied)
		obs.Ruleset.Repaired = repaired
	}
	fs := Findings(obs)
	c.report(ctx, fs)
	state, detail := Decide(obs, fs)
	st := &mamoriv1.ControlStatus{State: state, Evidence: Evidence(obs, fs)}
	detail.Apply(st)
	return st, nil
}

func (c *Control) observe(ctx context.Context, mode mamoriv1.Mode, s Settings, servers []netip.AddrPort) Observation {
	obs := Observation{Mode: mode, Settings: s, AgentServers: servers}
	obs.Routes, obs.RoutesErr = c.sys.routes()
	obs.Interfaces, obs.InterfacesErr = c.sys.interfaces()
	obs.Forwarding, obs.ForwardingErr = c.sys.forwarding()
	if obs.InterfacesErr == nil && s.NoNewInterfaces {
		c.mu.Lock()
		fresh := c.baseline == nil
		if fresh {
			c.baseline = map[string]bool{}
			for _, n := range obs.Interfaces {
				c.baseline[n] = true
			}
		}
		for _, n := range obs.Interfaces {
			if !c.baseline[n] {
				obs.NewInterfaces = append(obs.NewInterfaces, n)
			}
		}
		c.mu.Unlock()
		if fresh {
			c.persist(ctx)
		}
	}
	res := resolver{sys: c.sys, timeout: s.ConnectTimeout, system: c.o.ResolvConf == ""}
	if !res.system {
		b, err := os.ReadFile(c.o.ResolvConf)
		if err == nil {
			res.servers, err = ParseResolvConf(b)
		}
		if err != nil {
			obs.Notes = append(obs.Notes, "nameservers: "+err.Error())
		}
	}
	var wg sync.WaitGroup
	if s.ForbiddenDNSName != "" {
		wg.Go(func() {
			r := res.lookup(ctx, s.ForbiddenDNSName)
			obs.DNS = &r
		})
	}
	if mode == mamoriv1.Mode_MODE_ENFORCE && c.sys.firewall() != nil {
		// The network proof, beside the terminal's: the same canaries
		// (those given as addresses: the table can only let addresses
		// through), probed with ProbeMark past mamori's own table.
		var byAddr []Target
		for _, t := range s.Canaries {
			if t.Addr.IsValid() {
				byAddr = append(byAddr, t)
			}
		}
		obs.NetworkProof = []CanaryResult{}
		if len(byAddr) > 0 {
			wg.Go(func() { obs.NetworkProof = probeCanaries(ctx, c.sys, res, byAddr, s.ConnectTimeout, ProbeMark) })
		}
	}
	obs.Canaries = probeCanaries(ctx, c.sys, res, s.Canaries, s.ConnectTimeout, 0)
	wg.Wait()
	return obs
}

func (c *Control) observeRuleset(ctx context.Context, s Settings, servers []netip.AddrPort, applied []Rule) *RulesetObservation {
	ro := &RulesetObservation{}
	fw := c.sys.firewall()
	if fw == nil {
		ro.Err = fmt.Errorf("enforcing: %w", errors.ErrUnsupported)
		return ro
	}
	rules := DesiredRules(s, servers)
	present, got, dropped, err := fw.live(ctx)
	if err != nil {
		ro.Err = err
		return ro
	}
	ro.Present, ro.Rules, ro.Dropped = present, CountRules(got), dropped
	ro.Diffs = tableDiff(present, fw.items(rules), got)
	if applied == nil && present {
		// Apply failed or has not run: a table is there but not ours to
		// vouch for.
		ro.Diffs = append(ro.Diffs, "mamori has not applied this policy's ruleset yet")
	}
	return ro
}

// report emits new findings and cleared ones. A finding is emitted once
// while it lasts; if emitting fails it is tried again next round.
func (c *Control) report(ctx context.Context, fs []Finding) {
	c.mu.Lock()
	prev := maps.Clone(c.reported)
	c.mu.Unlock()
	now := map[string]string{}
	for _, f := range fs {
		if _, ok := prev[f.Key]; ok {
			now[f.Key] = prev[f.Key]
			continue
		}
		if len(now) >= maxFindingEvents {
			break
		}
		if c.emit(ctx, KindFinding, map[string]string{"finding": f.Key, "detail": clipN(f.Detail, 4000), "severity": f.Severity.String()}) {
			now[f.Key] = f.Detail
		}
	}
	for k := range prev {
		if _, still := now[k]; still || slices.ContainsFunc(fs, func(f Finding) bool { return f.Key == k }) {
			continue
		}
		if !c.emit(ctx, KindFindingCleared, map[string]string{"finding": k}) {
			now[k] = prev[k] // try again next round
		}
	}
	c.mu.Lock()
	c.reported = now
	c.mu.Unlock()
}

func (c *Control) emit(ctx context.Context, kind string, attrs map[string]string) bool {
	if c.o.Emitter == nil {
		return true
	}
	if err := c.o.Emitter.Emit(ctx, policy.ControlIsolation, kind, attrs); err != nil {
		c.log.ErrorContext(ctx, "could not record an isolation event", "kind", kind, "error", err)
		return false
	}
	return true
}

// Observation is everything one round saw. The pure functions Findings,
// Decide and Evidence turn it into the status.
type Observation struct {
	Mode          mamoriv1.Mode
	Settings      Settings
	AgentServers  []netip.AddrPort
	Routes        []Route
	RoutesErr     error
	Interfaces    []string
	InterfacesErr error
	NewInterfaces []string
	Forwarding    Forwarding
	ForwardingErr error
	Canaries      []CanaryResult
	// NetworkProof is the address canaries probed past mamori's table
	// (enforce mode; nil otherwise): whether the network itself stops
	// them.
	NetworkProof []CanaryResult
	DNS          *DNSResult // nil: no forbidden name set
	Ruleset      *RulesetObservation
	Notes        []string
}

// RulesetObservation is the state of mamori's table in enforce mode.
type RulesetObservation struct {
	Present  bool
	Rules    int
	Dropped  uint64
	Diffs    []string // live table vs desired
	Repaired []string // differences Apply found and repaired since the last Status
	Err      error
}

// Severity of a finding.
type Severity int

const (
	// Degraded: isolation is in doubt.
	Degraded Severity = iota
	// Violation: another tier is reachable.
	Violation
)

func (s Severity) String() string {
	if s == Violation {
		return "violation"
	}
	return "degraded"
}

// Finding is one thing wrong. Key is stable across rounds. Detail is the
// English sentence, Message the same as a message of the shared catalogue.
type Finding struct {
	Key      string
	Detail   string
	Severity Severity
	Message  control.Detail
}

// finding is a Finding of message id with args (error texts among them stay
// English).
func finding(key string, sev Severity, id i18n.ID, args ...string) Finding {
	m := control.D(id, args...)
	return Finding{Key: key, Detail: m.English(), Severity: sev, Message: m}
}

// maxDetailArg bounds each argument of a finding in the status detail, so
// that one finding's detail stays within 1000 bytes (events keep it whole).
const maxDetailArg = 250

// maxFindingsPerKind bounds findings about routes and interfaces;
// maxFindingEvents the findings followed by events.
const (
	maxFindingsPerKind = 8
	maxFindingEvents   = 48
)

// Findings lists what is wrong in an observation, most severe first.
func Findings(o Observation) []Finding {
	var fs []Finding
	for _, cr := range o.Canaries {
		k := "canary " + cr.Target.String()
		switch cr.Outcome {
		case OutcomeReachable:
			fs = append(fs, finding(k, Violation, "detail.isolation.canary-reachable", cr.Target.String(), cr.Detail))
		case OutcomeRefused:
			fs = append(fs, finding(k, Degraded, "detail.isolation.canary-refused", cr.Target.String(), cr.Detail))
		case OutcomeError:
			fs = append(fs, finding(k, Degraded, "detail.isolation.canary-error", cr.Target.String(), cr.Detail))
		}
	}
	if len(o.Settings.Canaries) == 0 {
		fs = append(fs, finding("canaries none", Degraded, "detail.isolation.no-canaries"))
	}
	if o.Settings.RequireNetworkSeparation {
		for _, cr := range o.NetworkProof {
			if outcomeRank(cr.Outcome) >= outcomeRank(OutcomeRefused) {
				fs = append(fs, finding("network "+cr.Target.String(), Degraded, "detail.isolation.network-not-separating", cr.Target.String(), cr.Outcome))
			}
		}
	}
	if o.DNS != nil && len(o.DNS.Addrs) > 0 {
		fs = append(fs, finding("dns "+o.Settings.ForbiddenDNSName, Degraded, "detail.isolation.dns",
			o.Settings.ForbiddenDNSName, joinAddrs(o.DNS.Addrs, 4), serverName(o.DNS.Server)))
	}
	fs = append(fs, routeFindings(o)...)
	fs = append(fs, interfaceFindings(o)...)
	switch {
	case o.ForwardingErr != nil && !errors.Is(o.ForwardingErr, errNotObserved):
		fs = append(fs, finding("forwarding error", Degraded, "detail.isolation.forwarding-error", o.ForwardingErr.Error()))
	case o.ForwardingErr == nil && o.Forwarding.On() && !o.Settings.AllowForwarding:
		fs = append(fs, finding("forwarding", Degraded, "detail.isolation.forwarding", o.Forwarding.String()))
	}
	if rs := o.Ruleset; rs != nil {
		switch {
		case rs.Err != nil:
			fs = append(fs, finding("ruleset error", Degraded, "detail.isolation.ruleset-error", TableName, rs.Err.Error()))
		case len(rs.Diffs) > 0:
			fs = append(fs, finding("ruleset altered", Degraded, "detail.isolation.ruleset-differs", TableName, strings.Join(rs.Diffs, "; ")))
		case len(rs.Repaired) > 0:
			fs = append(fs, finding("ruleset altered", Degraded, "detail.isolation.ruleset-repaired", TableName, strings.Join(rs.Repaired, "; ")))
		}
	}
	slices.SortStableFunc(fs, func(a, b Finding) int { return int(b.Severity) - int(a.Severity) })
	return fs
}

func routeFindings(o Observation) []Finding {
	if o.RoutesErr != nil {
		if errors.Is(o.RoutesErr, errNotObserved) {
			return nil
		}
		return []Finding{finding("routes error", Degraded, "detail.isolation.routes-error", o.RoutesErr.Error())}
	}
	var fs []Finding
	n := 0
	for _, r := range o.Routes {
		if !r.Path() || specialNet(r.Dst) {
			continue
		}
		var why control.Detail
		switch {
		case r.Default() && !r.Gateway.IsValid():
			why = control.D("detail.isolation.route-no-gateway", r.String(), r.Iface)
		case r.Default() && !inAllowed(o.Settings.AllowedNetworks, netip.PrefixFrom(r.Gateway, r.Gateway.BitLen())):
			why = control.D("detail.isolation.route-gateway-outside", r.String())
		case !r.Default() && !inAllowed(o.Settings.AllowedNetworks, r.Dst) && !isAllowedHost(o, r.Dst):
			why = control.D("detail.isolation.route-not-allowed", r.String())
		default:
			continue
		}
		if n++; n > maxFindingsPerKind {
			fs = append(fs, finding("routes more", Degraded, "detail.isolation.routes-more"))
			break
		}
		fs = append(fs, finding("route "+r.String(), Degraded, why.ID, why.Args...))
	}
	return fs
}

// specialNet is loopback, link-local or multicast: not a way to a tier.
func specialNet(p netip.Prefix) bool {
	a := p.Addr()
	return p.Bits() > 0 && (a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsInterfaceLocalMulticast())
}

func inAllowed(allowed []netip.Prefix, p netip.Prefix) bool {
	for _, a := range allowed {
		if a.Bits() <= p.Bits() && a.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func isAllowedHost(o Observation, p netip.Prefix) bool {
	if p.Bits() != p.Addr().BitLen() {
		return false
	}
	a := p.Addr()
	for _, s := range slices.Concat(o.AgentServers, o.Settings.Servers) {
		if s.Addr() == a {
			return true
		}
	}
	for _, s := range o.Settings.AllowedServices {
		if s.Addr.Addr() == a {
			return true
		}
	}
	return false
}

func interfaceFindings(o Observation) []Finding {
	if o.InterfacesErr != nil {
		if errors.Is(o.InterfacesErr, errNotObserved) {
			return nil
		}
		return []Finding{finding("interfaces error", Degraded, "detail.isolation.interfaces-error", o.InterfacesErr.Error())}
	}
	var fs []Finding
	if len(o.Settings.AllowedInterfaces) > 0 {
		for _, n := range unexpectedInterfaces(o) {
			if len(fs) >= maxFindingsPerKind {
				break
			}
			fs = append(fs, finding("interface "+n, Degraded, "detail.isolation.interface-not-allowed", n))
		}
	}
	for _, n := range o.NewInterfaces {
		if len(fs) >= 2*maxFindingsPerKind {
			break
		}
		if slices.ContainsFunc(fs, func(f Finding) bool { return f.Key == "interface "+n }) {
			continue
		}
		fs = append(fs, finding("interface "+n, Degraded, "detail.isolation.interface-new", n))
	}
	return fs
}

func unexpectedInterfaces(o Observation) []string {
	var out []string
	for _, n := range o.Interfaces {
		if n == "lo" || interfaceAllowed(o.Settings.AllowedInterfaces, n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func interfaceAllowed(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Decide turns findings into a state and a one-line detail (at most about
// 1000 bytes in English). One finding in enforce mode is its own message;
// several are counted, their English sentences listed.
func Decide(o Observation, fs []Finding) (mamoriv1.ControlState, control.Detail) {
	var (
		msgs  []string
		parts []control.Detail
	)
	for _, f := range fs {
		msgs = append(msgs, f.Detail)
		parts = append(parts, clipped(f.Message))
	}
	count, list := strconv.Itoa(len(fs)), clipN(strings.Join(msgs, "; "), 960)
	unreachable, canaries := canarySummary(o)
	if o.Mode != mamoriv1.Mode_MODE_ENFORCE && (len(fs) == 0 || fs[0].Severity != Violation) {
		if len(fs) == 0 {
			return mamoriv1.ControlState_CONTROL_STATE_MONITORING, control.D("detail.isolation.monitoring-clean", unreachable, canaries)
		}
		return mamoriv1.ControlState_CONTROL_STATE_MONITORING, control.D("detail.isolation.monitoring-findings", count, list).WithParts(parts)
	}
	if len(fs) == 0 {
		return mamoriv1.ControlState_CONTROL_STATE_ENFORCED, control.D("detail.isolation.enforced",
			strconv.Itoa(o.Ruleset.Rules), strconv.FormatUint(o.Ruleset.Dropped, 10), unreachable, canaries)
	}
	state := mamoriv1.ControlState_CONTROL_STATE_DEGRADED
	if fs[0].Severity == Violation {
		state = mamoriv1.ControlState_CONTROL_STATE_FAILED
	}
	if len(fs) == 1 {
		return state, clipped(fs[0].Message)
	}
	return state, control.D("detail.problems", count, list).WithParts(parts)
}

// clipped is m with every argument cut to maxDetailArg.
func clipped(m control.Detail) control.Detail {
	args := make([]string, len(m.Args))
	for i, a := range m.Args {
		args[i] = clipN(a, maxDetailArg)
	}
	return control.D(m.ID, args...)
}

// canarySummary is how many canaries are unreachable, of how many.
func canarySummary(o Observation) (unreachable, total string) {
	n := 0
	for _, cr := range o.Canaries {
		if outcomeRank(cr.Outcome) < outcomeRank(OutcomeError) {
			n++
		}
	}
	return strconv.Itoa(n), strconv.Itoa(len(o.Canaries))
}

// Evidence is what the status carries for an officer: at most ~40 keys
// (the server accepts 64) with values clipped to 4000 bytes.
func Evidence(o Observation, fs []Finding) map[string]string {
	ev := evidence(o, fs)
	for k, v := range ev {
		ev[k] = clipN(v, 4000)
	}
	return ev
}

func evidence(o Observation, fs []Finding) map[string]string {
	ev := map[string]string{
		"findings": strconv.Itoa(len(fs)),
		"policy": fmt.Sprintf("%d allowed networks, %d allowed services, %d servers, %d canaries",
			len(o.Settings.AllowedNetworks), len(o.Settings.AllowedServices), len(o.AgentServers)+len(o.Settings.Servers), len(o.Settings.Canaries)),
	}
	for _, cr := range o.Canaries {
		ev["canary "+cr.Target.String()] = clipN(cr.Outcome+": "+cr.Detail, 4000)
	}
	if k, v := networkProofEvidence(o); k != "" {
		ev[k] = clipN(v, 4000)
	}

	if o.DNS != nil {
		k := "dns " + o.Settings.ForbiddenDNSName
		switch {
		case len(o.DNS.Addrs) > 0:
			ev[k] = "resolves to " + joinAddrs(o.DNS.Addrs, 8) + " via " + serverName(o.DNS.Server)
		case o.DNS.Err != nil:
			ev[k] = clipN("not resolvable: no nameserver answered ("+o.DNS.Err.Error()+")", 4000)
		default:
			ev[k] = "not resolvable: the nameservers return no address"
		}
	}
	switch {
	case errors.Is(o.RoutesErr, errNotObserved):
		ev["routes"] = "not checked on this system"
	case o.RoutesErr != nil:
		ev["routes"] = clipN("error: "+o.RoutesErr.Error(), 4000)
	default:
		var defs, outside []string
		for _, r := range o.Routes {
			if !r.Path() || specialNet(r.Dst) {
				continue
			}
			if r.Default() {
				defs = append(defs, r.String())
			} else if !inAllowed(o.Settings.AllowedNetworks, r.Dst) && !isAllowedHost(o, r.Dst) {
				outside = append(outside, r.String())
			}
		}
		ev["routes.default"] = clipN(orNone(defs), 4000)
		ev["routes.outside_allowed"] = clipN(orNone(outside), 4000)
	}
	switch {
	case errors.Is(o.InterfacesErr, errNotObserved):
	case o.InterfacesErr != nil:
		ev["interfaces"] = clipN("error: "+o.InterfacesErr.Error(), 4000)
	default:
		ev["interfaces"] = clipN(strings.Join(o.Interfaces, ", "), 4000)
		if len(o.Settings.AllowedInterfaces) > 0 || o.Settings.NoNewInterfaces {
			un := slices.Concat(unexpectedInterfaces(o), o.NewInterfaces)
			if len(o.Settings.AllowedInterfaces) == 0 {
				un = o.NewInterfaces
			}
			slices.Sort(un)
			ev["interfaces.unexpected"] = clipN(orNone(slices.Compact(un)), 4000)
		}
	}
	switch {
	case errors.Is(o.ForwardingErr, errNotObserved):
	case o.ForwardingErr != nil:
		ev["forwarding"] = clipN("error: "+o.ForwardingErr.Error(), 4000)
	case o.Forwarding.On() && o.Settings.AllowForwarding:
		ev["forwarding"] = "on (" + o.Forwarding.String() + "), allowed by the policy; forwarded traffic limited to the allowed networks and services in enforce mode"
	case o.Forwarding.On():
		ev["forwarding"] = "on (" + o.Forwarding.String() + ")"
	default:
		ev["forwarding"] = "off"
	}
	if rs := o.Ruleset; rs != nil {
		switch {
		case rs.Err != nil:
			ev["ruleset"] = clipN("error: "+rs.Err.Error(), 4000)
		case !rs.Present:
			ev["ruleset"] = "absent"
		case len(rs.Diffs) > 0:
			ev["ruleset"] = clipN("altered: "+strings.Join(rs.Diffs, "; "), 4000)
		default:
			ev["ruleset"] = fmt.Sprintf("present, unchanged, %d rules", rs.Rules)
		}
		if rs.Present {
			ev["ruleset.dropped_packets"] = strconv.FormatUint(rs.Dropped, 10)
		}
		if len(rs.Repaired) > 0 {
			ev["ruleset.reapplied"] = clipN(strings.Join(rs.Repaired, "; "), 4000)
		}
	} else {
		ev["ruleset"] = "none (monitor mode)"
	}
	if len(o.Notes) > 0 {
		ev["notes"] = clipN(strings.Join(o.Notes, "; "), 4000)
	}
	var violations []string
	for _, f := range fs {
		if f.Severity == Violation {
			violations = append(violations, f.Detail)
		}
	}
	if len(violations) > 0 {
		ev[policy.EvidenceViolation] = clipN(strings.Join(violations, "; "), 4000)
	}
	return ev
}

// networkProofEvidence says whether the network itself separates the
// tiers, as far as the canaries show.
func networkProofEvidence(o Observation) (string, string) {
	const key = "network_proof"
	switch {
	case len(o.Settings.Canaries) == 0:
		return "", ""
	case o.Mode != mamoriv1.Mode_MODE_ENFORCE:
		return key, "monitor mode: no table of mamori's, so the canaries above measure the network itself"
	case o.NetworkProof == nil:
		return key, "not measured on this system"
	case len(o.NetworkProof) == 0:
		return key, "not measured: the canaries are DNS names; give address canaries to measure the network past mamori's table"
	}
	var through, stopped []string
	for _, cr := range o.NetworkProof {
		s := cr.Target.String() + " " + cr.Outcome
		if outcomeRank(cr.Outcome) >= outcomeRank(OutcomeRefused) {
			through = append(through, s)
		} else {
			stopped = append(stopped, s)
		}
	}
	if len(through) > 0 {
		return key, fmt.Sprintf("the network does NOT separate the tiers: past mamori's table %s (only this terminal's table stops them); stopped by the network: %s",
			strings.Join(through, ", "), orNone(stopped))
	}
	return key, fmt.Sprintf("the network separates the tiers: %d of %d canaries stopped past mamori's table (%s)", len(stopped), len(o.NetworkProof), strings.Join(stopped, ", "))
}

func serverName(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "the system resolver"
	}
	return ap.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as []netip.Addr, max int) string {
	var s []string
	for i, a := range as {
		if i == max {
			s = append(s, "…")
			break
		}
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// clipN puts s on one line and shortens it to at most n bytes of valid
// UTF-8.
func clipN(s string, n int) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", "; ")
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8ValidEnd(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func utf8ValidEnd(s string) bool { return strings.ToValidUTF8(s, "") == s }
