//go:build linux

package isolation

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

const nsPrefix = "mamori-iso-"

// lab is three network namespaces the test creates:
//
//	term (terminal) 10.N.1.2 ── 10.N.1.1 srv (server, router) 10.N.2.1 ── 10.N.2.2 oth (other tier)
//	                                     10.N.9.1/32 on srv's lo: the mamori server
//
// The terminal's default route goes through srv, which forwards to the other
// tier: without a firewall the other tier is reachable. Nothing outside
// these namespaces is addressed.
type lab struct {
	t              *testing.T
	ip             string
	term, srv, oth string // namespace names
	n              int    // second octet of every address
}

func (l *lab) path(ns string) string { return "/run/netns/" + ns }
func (l *lab) addr(s string) string  { return "10." + strconv.Itoa(l.n) + "." + s }

func newLab(t *testing.T) *lab {
	testenv.RequireRoot(t)
	ip := testenv.LookPath(t, "ip", "iproute2")
	testenv.Short(t)
	removeStaleNamespaces(t, ip)
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	id := fmt.Sprintf("%s%d-%s-", nsPrefix, os.Getpid(), hex.EncodeToString(rb[:2]))
	l := &lab{t: t, ip: ip, term: id + "term", srv: id + "srv", oth: id + "oth", n: 100 + int(rb[2])%150}
	for _, ns := range []string{l.term, l.srv, l.oth} {
		l.run("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		l.run("-n", ns, "link", "set", "lo", "up")
	}
	l.run("-n", l.term, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.srv)
	l.run("-n", l.oth, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", l.srv)
	l.run("-n", l.term, "addr", "add", l.addr("1.2/24"), "dev", "eth0")
	l.run("-n", l.srv, "addr", "add", l.addr("1.1/24"), "dev", "eth0")
	l.run("-n", l.srv, "addr", "add", l.addr("2.1/24"), "dev", "eth1")
	l.run("-n", l.srv, "addr", "add", l.addr("9.1/32"), "dev", "lo")
	l.run("-n", l.oth, "addr", "add", l.addr("2.2/24"), "dev", "eth0")
	for _, li := range [][2]string{{l.term, "eth0"}, {l.srv, "eth0"}, {l.srv, "eth1"}, {l.oth, "eth0"}} {
		l.run("-n", li[0], "link", "set", li[1], "up")
	}
	l.run("-n", l.term, "route", "add", "default", "via", l.addr("1.1"))
	l.run("-n", l.oth, "route", "add", "default", "via", l.addr("2.1"))
	// Forwarding in srv only.
	l.run("netns", "exec", l.srv, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	return l
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// in runs f on a thread inside namespace ns.
func (l *lab) in(ns string, f func() error) {
	l.t.Helper()
	if err := (&linuxSystem{netns: l.path(ns)}).in(f); err != nil {
		l.t.Fatalf("in %s: %v", ns, err)
	}
}

// removeStaleNamespaces deletes namespaces left by a test process that died
// before its cleanup ran. Only names with our prefix and a dead pid.
func removeStaleNamespaces(t *testing.T, ip string) {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("removing stale namespace %s", e.Name())
		_ = exec.Command(ip, "netns", "del", e.Name()).Run()
	}
}

// listen starts a TCP listener inside ns; every connection gets its input
// echoed back.
func (l *lab) listen(ns, addr string) {
	var ln net.Listener
	l.in(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, sc.Text())
				}
			}()
		}
	}()
}

// dns answers A queries for names under "test." with addr, NXDOMAIN
// otherwise, inside ns.
func (l *lab) dns(ns, listen string, answer netip.Addr) {
	var pc net.PacketConn
	l.in(ns, func() (err error) {
		pc, err = net.ListenPacket("udp", listen)
		return err
	})
	l.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			q := m.Questions[0]
			m.Header.Response = true
			if strings.HasSuffix(q.Name.String(), ".test.") && q.Type == dnsmessage.TypeA {
				m.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1},
					Body:   &dnsmessage.AResource{A: answer.As4()},
				}}
			} else if q.Type != dnsmessage.TypeAAAA {
				m.Header.RCode = dnsmessage.RCodeNameError
			}
			out, err := m.Pack()
			if err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
}

// dial connects from the terminal.
func (l *lab) dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := (&linuxSystem{netns: l.path(l.term)}).in(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		return err
	})
	return c, err
}

func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// nft opens a netlink connection in the terminal, as an attacker with root
// (or the test, checking) would.
func (l *lab) nft() *nftables.Conn {
	l.t.Helper()
	fd, err := unix.Open(l.path(l.term), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		l.t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.CloseLasting() })
	return c
}

func (l *lab) tables() map[string]bool {
	l.t.Helper()
	ts, err := l.nft().ListTables()
	if err != nil {
		l.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, t := range ts {
		out[fmt.Sprintf("%d %s", t.Family, t.Name)] = true
	}
	return out
}

// TestIsolationInNamespaces runs the control inside a terminal namespace
// against a real kernel: routes, interfaces, TCP canaries, DNS and the
// nftables ruleset, with drift made by hand.
func TestIsolationInNamespaces(t *testing.T) {
	l := newLab(t)
	server, canary := l.addr("9.1:7443"), l.addr("2.2:8080")
	l.listen(l.srv, server)
	l.listen(l.srv, l.addr("9.1:9999")) // same host, port not allowed
	l.listen(l.oth, canary)
	l.dns(l.oth, l.addr("2.2:53"), netip.MustParseAddr(l.addr("2.2")))
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# test\nnameserver "+l.addr("2.2")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// An unrelated table that must survive everything the control does.
	nc := l.nft()
	other := nc.AddTable(&nftables.Table{Name: "site-firewall", Family: nftables.TableFamilyINet})
	och := nc.AddChain(&nftables.Chain{Name: "keep", Table: other})
	nc.AddRule(&nftables.Rule{Table: other, Chain: och, Exprs: []expr.Any{&expr.Counter{}}})
	if err := nc.Flush(); err != nil {
		t.Fatalf("create unrelated table: %v", err)
	}
	checkOtherTable := func() {
		t.Helper()
		rs, err := l.nft().GetRules(other, och)
		if err != nil || len(rs) != 1 {
			t.Fatalf("unrelated table inet site-firewall was touched: rules %v, err %v", rs, err)
		}
	}

	em := &controltest.Emitter{}
	c := New(Options{Emitter: em, Netns: l.path(l.term), ResolvConf: resolv, Servers: []string{server}})
	settings := map[string]string{
		SettingAllowedNetworks:   l.addr("1.0/24"),
		SettingCanaries:          canary + ", canary.other.test:8080",
		SettingForbiddenDNSName:  "www.forbidden.test",
		SettingAllowedInterfaces: "lo eth*",
		SettingConnectTimeout:    "500ms",
	}
	pol := func(mode mamoriv1.Mode) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mode, Settings: settings}
	}
	ctx := t.Context()
	round := func(p *mamoriv1.ControlPolicy) *mamoriv1.ControlStatus {
		t.Helper()
		start := time.Now()
		if err := c.Apply(ctx, p); err != nil {
			t.Fatalf("apply: %v", err)
		}
		st := status(t, c)
		t.Logf("round in %v: %v %q", time.Since(start).Round(time.Millisecond), st.State, st.Detail)
		return st
	}

	// The agent's own long-lived connection to the server, opened before
	// anything is enforced.
	agentConn, err := l.dial(server)
	if err != nil {
		t.Fatalf("terminal cannot reach the server at all: %v", err)
	}
	defer agentConn.Close()

	// 1. No isolation: monitor mode sees the canary reachable, and says so
	// as FAILED with the violation marked for the server.
	st := round(pol(mamoriv1.Mode_MODE_MONITOR))
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || st.Evidence[policy.EvidenceViolation] == "" {
		t.Errorf("monitor: state %v, violation %q; want FAILED with the violation", st.State, st.Evidence[policy.EvidenceViolation])
	}
	for _, k := range []string{"canary " + canary, "canary canary.other.test:8080"} {
		if !strings.HasPrefix(st.Evidence[k], OutcomeReachable) {
			t.Errorf("evidence %q = %q, want reachable", k, st.Evidence[k])
		}
	}
	if !strings.HasPrefix(st.Evidence["dns www.forbidden.test"], "resolves to "+l.addr("2.2")) {
		t.Errorf("dns evidence %q", st.Evidence["dns www.forbidden.test"])
	}
	if !strings.Contains(st.Detail, "this terminal can reach "+canary) {
		t.Errorf("detail does not name the canary: %q", st.Detail)
	}
	if st.Evidence["routes.default"] != "default via "+l.addr("1.1")+" dev eth0" {
		t.Errorf("routes.default = %q", st.Evidence["routes.default"])
	}
	findings := kinds(em.Events(), KindFinding)
	if len(findings) != 3 { // two canaries and the DNS name
		t.Errorf("finding events %v, want 3", findings)
	}
	if !containsAttr(findings, "severity", "violation") {
		t.Errorf("no finding event marked as a violation (the server's tier-reachable incident): %v", findings)
	}
	// The same findings next round: no new events.
	status(t, c)
	if ev := em.Events(); len(ev) != 0 {
		t.Errorf("repeated findings emitted again: %v", ev)
	}
	// Through a Set in enforce mode without the ruleset the verdict would
	// not be ENFORCED either: the same observation decides FAILED.
	obs := c.observe(ctx, mamoriv1.Mode_MODE_ENFORCE, c.settings, nil)
	obs.Ruleset = &RulesetObservation{}
	if s, _ := Decide(obs, Findings(obs)); s != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Errorf("enforce without ruleset, canary reachable: %v, want FAILED", s)
	}

	// 2. Enforce: canaries cut off, server still reachable.
	st = round(pol(mamoriv1.Mode_MODE_ENFORCE))
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("enforce: %v %q, evidence %v", st.State, st.Detail, st.Evidence)
	}
	// Rules counted, not chains.
	if want := fmt.Sprintf("present, unchanged, %d rules", len(DesiredRules(c.settings, c.agentServers))); st.Evidence["ruleset"] != want {
		t.Errorf("ruleset evidence %q, want %q", st.Evidence["ruleset"], want)
	}
	// Dropped SYNs: the connect times out.
	if !strings.HasPrefix(st.Evidence["canary "+canary], OutcomeTimeout) ||
		!strings.HasPrefix(st.Evidence["canary canary.other.test:8080"], OutcomeUnresolved) {
		t.Errorf("canary evidence %v", st.Evidence)
	}
	if err := echo(agentConn, "still there"); err != nil {
		t.Errorf("the agent's existing connection to the server broke: %v", err)
	}
	if c2, err := l.dial(server); err != nil {
		t.Errorf("new connection to the server refused under enforce: %v", err)
	} else {
		if err := echo(c2, "new"); err != nil {
			t.Errorf("new server connection: %v", err)
		}
		c2.Close()
	}
	if c3, err := l.dial(l.addr("9.1:9999")); err == nil {
		c3.Close()
		t.Errorf("a port of the server host that is not allowed is reachable")
	}
	if c4, err := l.dial(canary); err == nil {
		c4.Close()
		t.Errorf("canary reachable by a plain dial under enforce")
	}
	checkOtherTable()
	evs := em.Events()
	if len(kinds(evs, KindRulesetApplied)) != 1 || len(kinds(evs, KindFindingCleared)) != 3 {
		t.Errorf("events after enforce: %v", evs)
	}
	if n, _ := strconv.Atoi(st.Evidence["ruleset.dropped_packets"]); n == 0 {
		status(t, c) // the counter counts the blocked canaries of the round
		if n, _ := strconv.Atoi(status(t, c).Evidence["ruleset.dropped_packets"]); n == 0 {
			t.Errorf("drop counter stays at 0")
		}
	}

	// 3. Drift: an attacker deletes the rule that lets the server through and
	// adds one that opens the other tier.
	ac := l.nft()
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	out := &nftables.Chain{Name: ChainOutput, Table: tbl}
	rules, err := ac.GetRules(tbl, out)
	if err != nil {
		t.Fatal(err)
	}
	deleted := ""
	for _, r := range rules {
		tag, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if strings.Contains(tag, "mamori server") {
			deleted = tag
			if err := ac.DelRule(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	ac.InsertRule(&nftables.Rule{Table: tbl, Chain: out, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := ac.Flush(); err != nil {
		t.Fatalf("attacker: %v", err)
	}
	if deleted == "" {
		t.Fatal("no server rule found to delete")
	}
	st = status(t, c)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(st.Detail, "missing rule \""+deleted) ||
		!strings.Contains(st.Detail, "unexpected rule in chain output: accept") || strings.Contains(st.Detail, "expr.") {
		t.Errorf("after tampering: %v %q", st.State, st.Detail)
	}
	if fs := kinds(em.Events(), KindFinding); !containsAttr(fs, "finding", "ruleset altered") {
		t.Errorf("no event for the drift: %v", fs)
	}
	st = round(pol(mamoriv1.Mode_MODE_ENFORCE)) // Apply re-applies
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || !strings.Contains(st.Detail, "has been re-applied") {
		t.Errorf("after re-apply: %v %q", st.State, st.Detail)
	}
	if re := kinds(em.Events(), KindRulesetReapplied); len(re) != 1 || !strings.Contains(re[0].Attrs["differences"], deleted) {
		t.Errorf("re-apply events %v", re)
	}
	st = round(pol(mamoriv1.Mode_MODE_ENFORCE))
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("after repair: %v %q", st.State, st.Detail)
	}
	if err := echo(agentConn, "after drift"); err != nil {
		t.Errorf("agent connection after drift: %v", err)
	}

	// 4. An interface appears (a USB tethering adapter).
	l.run("-n", l.term, "link", "add", "usb0", "type", "veth", "peer", "name", "usb1")
	st = status(t, c)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || st.Evidence["interfaces.unexpected"] != "usb0, usb1" {
		t.Errorf("new interface: %v %q %v", st.State, st.Detail, st.Evidence["interfaces.unexpected"])
	}
	l.run("-n", l.term, "link", "del", "usb0")
	em.Events()

	// 5. Back to monitor: the table goes, the other table stays.
	round(pol(mamoriv1.Mode_MODE_MONITOR))
	if tb := l.tables(); tb["1 mamori"] || !tb["1 site-firewall"] {
		t.Errorf("tables after monitor: %v", tb)
	}
	checkOtherTable()
	if len(kinds(em.Events(), KindRulesetRemoved)) != 1 {
		t.Errorf("no ruleset_removed event")
	}
	if c5, err := l.dial(canary); err != nil {
		t.Errorf("canary not reachable after the table was removed: %v", err)
	} else {
		c5.Close()
	}

	// 6. Enforce again, then the policy drops the control. (Called directly:
	// control.Set's Round can report "still busy" right after a fast Apply —
	// see the report on issue 8.)
	if st := round(pol(mamoriv1.Mode_MODE_ENFORCE)); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("enforce again: %v %q", st.State, st.Detail)
	}
	if st := round(nil); st.State != mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE {
		t.Errorf("without the control: %v %q", st.State, st.Detail)
	}
	if tb := l.tables(); tb["1 mamori"] || !tb["1 site-firewall"] {
		t.Errorf("tables after the control left the policy: %v", tb)
	}
	checkOtherTable()
}

func status(t *testing.T, c *Control) *mamoriv1.ControlStatus {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func kinds(evs []controltest.Event, kind string) []controltest.Event {
	var out []controltest.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func containsAttr(evs []controltest.Event, k, v string) bool {
	for _, e := range evs {
		if e.Attrs[k] == v {
			return true
		}
	}
	return false
}

// addGuest puts a fourth namespace behind the terminal, as a VM or
// container set-up would: guest 10.N.3.2 ── 10.N.3.1 term (eth1), the
// terminal forwarding (IPv4) and masquerading the guest's traffic out of
// eth0 with a NAT table of its own owner ("ip guest-nat"). It returns the
// guest's namespace name.
func (l *lab) addGuest() string {
	guest := strings.TrimSuffix(l.term, "term") + "gst"
	l.run("netns", "add", guest)
	l.t.Cleanup(func() {
		if out, err := exec.Command(l.ip, "netns", "del", guest).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", guest, err, out)
		}
	})
	l.run("-n", guest, "link", "set", "lo", "up")
	l.run("-n", guest, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", l.term)
	l.run("-n", guest, "addr", "add", l.addr("3.2/24"), "dev", "eth0")
	l.run("-n", l.term, "addr", "add", l.addr("3.1/24"), "dev", "eth1")
	l.run("-n", guest, "link", "set", "eth0", "up")
	l.run("-n", l.term, "link", "set", "eth1", "up")
	l.run("-n", guest, "route", "add", "default", "via", l.addr("3.1"))
	l.setForwarding(l.term, "1")
	nc := l.nft()
	nat := nc.AddTable(&nftables.Table{Name: "guest-nat", Family: nftables.TableFamilyIPv4})
	post := nc.AddChain(&nftables.Chain{Name: "post", Table: nat, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	nc.AddRule(&nftables.Rule{Table: nat, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("eth0")},
		&expr.Masq{},
	}})
	if err := nc.Flush(); err != nil {
		l.t.Fatalf("guest NAT table: %v", err)
	}
	return guest
}

func (l *lab) setForwarding(ns, v string) {
	l.t.Helper()
	l.run("netns", "exec", ns, "sh", "-c", "echo "+v+" > /proc/sys/net/ipv4/ip_forward")
}

func (l *lab) forwarding(ns string) string {
	l.t.Helper()
	out, err := exec.Command(l.ip, "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward").CombinedOutput()
	if err != nil {
		l.t.Fatalf("read ip_forward in %s: %v: %s", ns, err, out)
	}
	return strings.TrimSpace(string(out))
}

// dialFrom connects from namespace ns.
func (l *lab) dialFrom(ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := (&linuxSystem{netns: l.path(ns)}).in(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		return err
	})
	return c, err
}

// TestForwardedTraffic: a guest behind the terminal (forwarding on,
// masquerade) must not reach another tier once the terminal enforces, and
// forwarding itself is a finding, switched off in enforce mode unless the
// policy allows it.
func TestForwardedTraffic(t *testing.T) {
	l := newLab(t)
	guest := l.addGuest()
	server, canary, tierSvc := l.addr("9.1:7443"), l.addr("2.2:8080"), l.addr("1.1:7000")
	l.listen(l.srv, server)
	l.listen(l.srv, tierSvc) // a service in the terminal's own tier
	l.listen(l.oth, canary)
	reach := func(ns, addr string) bool {
		c, err := l.dialFrom(ns, addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !reach(guest, canary) {
		t.Fatal("set-up: the guest cannot reach the other tier even without the control")
	}
	em := &controltest.Emitter{}
	c := New(Options{Emitter: em, Netns: l.path(l.term), ResolvConf: os.DevNull, Servers: []string{server}})
	settings := map[string]string{
		SettingAllowedNetworks:   l.addr("1.0/24") + " " + l.addr("3.0/24"), // the guests' network is the tier's too
		SettingCanaries:          canary,
		SettingAllowedInterfaces: "lo eth*",
		SettingConnectTimeout:    "300ms",
	}
	ctx := t.Context()
	round := func(mode mamoriv1.Mode, s map[string]string) *mamoriv1.ControlStatus {
		t.Helper()
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mode, Settings: s}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		return status(t, c)
	}

	st := round(mamoriv1.Mode_MODE_MONITOR, settings)
	if st.Evidence["forwarding"] != "on (IPv4)" || !strings.Contains(st.Detail, "IP forwarding is on") {
		t.Errorf("monitor: forwarding not a finding: %q %q", st.Evidence["forwarding"], st.Detail)
	}

	st = round(mamoriv1.Mode_MODE_ENFORCE, settings)
	if reach(guest, canary) {
		t.Errorf("enforce: the guest behind the terminal reaches the other tier (%v %q)", st.State, st.Detail)
	}
	if got := l.forwarding(l.term); got != "0" {
		t.Errorf("enforce: ip_forward = %s, want 0", got)
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || st.Evidence["forwarding"] != "off" {
		t.Errorf("enforce: %v %q forwarding %q", st.State, st.Detail, st.Evidence["forwarding"])
	}
	if off := kinds(em.Events(), KindForwardingOff); len(off) != 1 {
		t.Errorf("forwarding_disabled events: %v", off)
	}

	// Someone switches forwarding on again: the forward chain still drops,
	// and the next round switches it off.
	l.setForwarding(l.term, "1")
	if reach(guest, canary) {
		t.Errorf("forwarding on by hand: the guest reaches the other tier through the forward chain")
	}
	round(mamoriv1.Mode_MODE_ENFORCE, settings)
	if got := l.forwarding(l.term); got != "0" {
		t.Errorf("after the next round: ip_forward = %s, want 0", got)
	}

	// The policy allows forwarding (a VM host): left on, the guest reaches
	// its own tier and still not the other one.
	allow := maps.Clone(settings)
	allow[SettingAllowForwarding] = "true"
	l.setForwarding(l.term, "1")
	st = round(mamoriv1.Mode_MODE_ENFORCE, allow)
	if got := l.forwarding(l.term); got != "1" {
		t.Errorf("allow_forwarding: ip_forward = %s, want 1", got)
	}
	if !reach(guest, tierSvc) {
		t.Errorf("allow_forwarding: the guest cannot reach its own tier")
	}
	if reach(guest, canary) {
		t.Errorf("allow_forwarding: the guest reaches the other tier")
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("allow_forwarding: %v %q", st.State, st.Detail)
	}
}

// trackConnections adds a table of another owner to the terminal that
// keeps connection tracking alive (as firewalld or ufw do): a base chain
// on output and input that looks at ct state.
func (l *lab) trackConnections() {
	nc := l.nft()
	tb := nc.AddTable(&nftables.Table{Name: "site-conntrack", Family: nftables.TableFamilyINet})
	for _, h := range []*nftables.ChainHook{nftables.ChainHookInput, nftables.ChainHookOutput} {
		accept := nftables.ChainPolicyAccept
		ch := nc.AddChain(&nftables.Chain{Name: fmt.Sprintf("hook%d", *h), Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: h, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		nc.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Counter{},
		}})
	}
	if err := nc.Flush(); err != nil {
		l.t.Fatalf("conntrack-tracking table: %v", err)
	}
}

// TestSessionsCut: with another owner's table tracking connections, a
// session into the other tier opened in monitor mode, or while mamori's
// table had been deleted, stops carrying data once the table is (re)applied;
// the agent's own connection to its server goes on.
func TestSessionsCut(t *testing.T) {
	l := newLab(t)
	server, canary := l.addr("9.1:7443"), l.addr("2.2:8080")
	l.listen(l.srv, server)
	l.listen(l.oth, canary)
	l.trackConnections()
	em := &controltest.Emitter{}
	c := New(Options{Emitter: em, Netns: l.path(l.term), ResolvConf: os.DevNull, Servers: []string{server}})
	settings := map[string]string{
		SettingAllowedNetworks: l.addr("1.0/24"),
		SettingCanaries:        canary,
		SettingConnectTimeout:  "300ms",
	}
	ctx := t.Context()
	apply := func(mode mamoriv1.Mode) {
		t.Helper()
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mode, Settings: settings}); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	open := func(addr string) net.Conn {
		t.Helper()
		conn, err := l.dial(addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := echo(conn, "hello"); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		return conn
	}

	apply(mamoriv1.Mode_MODE_MONITOR)
	agentConn := open(server)
	session := open(canary) // opened in monitor mode
	start := time.Now()
	apply(mamoriv1.Mode_MODE_ENFORCE)
	t.Logf("enforce with the cut: %v", time.Since(start).Round(time.Millisecond))
	if err := echo(session, "after enforce"); err == nil {
		t.Errorf("a session into the other tier opened in monitor mode still carries data under enforce")
	}
	if err := echo(agentConn, "agent"); err != nil {
		t.Errorf("the agent's connection to its server was cut: %v", err)
	}
	cut := kinds(em.Events(), KindSessionsCut)
	if len(cut) != 1 || !strings.Contains(cut[0].Attrs["sessions"], "tcp "+l.addr("1.2:")) || !strings.Contains(cut[0].Attrs["sessions"], "→ "+canary) {
		t.Errorf("sessions_cut events %v", cut)
	}

	// The table is deleted by hand; a session opens meanwhile; the repair
	// cuts it.
	ac := l.nft()
	ac.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	if err := ac.Flush(); err != nil {
		t.Fatal(err)
	}
	session = open(canary)
	apply(mamoriv1.Mode_MODE_ENFORCE)
	if len(kinds(em.Events(), KindRulesetReapplied)) != 1 {
		t.Fatalf("the table was not re-applied")
	}
	if err := echo(session, "after repair"); err == nil {
		t.Errorf("a session opened while the table was gone still carries data after the repair")
	}
	if err := echo(agentConn, "agent again"); err != nil {
		t.Errorf("the agent's connection to its server was cut by the repair: %v", err)
	}
	if st := status(t, c); st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || !strings.Contains(st.Detail, "re-applied") {
		t.Errorf("after the repair: %v %q", st.State, st.Detail)
	}
}

// addr6 is an IPv6 address of the lab: fd00:N:s.
func (l *lab) addr6(s string) string { return "fd00:" + strconv.Itoa(l.n) + ":" + s }

// addIPv6 gives the lab's links IPv6 addresses (no duplicate address
// detection, so they work at once) and routes, srv forwarding IPv6 too:
// term fd00:N:1::2 ── fd00:N:1::1 srv fd00:N:2::1 ── fd00:N:2::2 oth.
func (l *lab) addIPv6() {
	for _, a := range [][3]string{
		{l.term, "eth0", "1::2/64"}, {l.srv, "eth0", "1::1/64"}, {l.srv, "eth1", "2::1/64"}, {l.oth, "eth0", "2::2/64"},
	} {
		l.run("-n", a[0], "-6", "addr", "add", l.addr6(a[2]), "dev", a[1], "nodad")
	}
	l.run("-n", l.term, "-6", "route", "add", "default", "via", l.addr6("1::1"))
	l.run("-n", l.oth, "-6", "route", "add", "default", "via", l.addr6("2::1"))
	l.run("netns", "exec", l.srv, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
	// Link-local addresses stay tentative (duplicate address detection)
	// for a second or two; neighbour discovery waits for them.
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range []string{l.term, l.srv, l.oth} {
		for {
			out, err := exec.Command(l.ip, "-n", ns, "-6", "addr", "show", "tentative").CombinedOutput()
			if err != nil {
				l.t.Fatalf("ip -6 addr show tentative: %v: %s", err, out)
			}
			if len(strings.TrimSpace(string(out))) == 0 {
				break
			}
			if time.Now().After(deadline) {
				l.t.Fatalf("IPv6 addresses in %s still tentative: %s", ns, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// udpEcho answers every datagram with itself, inside ns.
func (l *lab) udpEcho(ns, addr string) {
	var pc net.PacketConn
	l.in(ns, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	l.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// TestCanaryProtocols: UDP, ICMP and IPv6 canaries prove reachability in
// monitor mode and unreachability under enforce, each in its own way.
func TestCanaryProtocols(t *testing.T) {
	l := newLab(t)
	l.addIPv6()
	server := l.addr("9.1:7443")
	l.listen(l.srv, server)
	tcp6 := "[" + l.addr6("2::2") + "]:8080"
	l.listen(l.oth, tcp6)
	udp := l.addr("2.2:5353")
	l.udpEcho(l.oth, udp)
	dns := l.addr("2.2:53")
	l.dns(l.oth, dns, netip.MustParseAddr(l.addr("2.2")))
	closedUDP := l.addr("2.2:9")   // nothing listens: ICMP port unreachable
	canaries := map[string]string{ // canary → outcome in monitor mode
		tcp6:                      OutcomeReachable,
		udp + "/udp":              OutcomeReachable,
		dns + "/udp":              OutcomeReachable,
		closedUDP + "/udp":        OutcomeRefused,
		l.addr("2.2") + "/icmp":   OutcomeReachable,
		l.addr6("2::2") + "/icmp": OutcomeReachable,
	}
	var list []string
	for k := range canaries {
		list = append(list, k)
	}
	em := &controltest.Emitter{}
	c := New(Options{Emitter: em, Netns: l.path(l.term), ResolvConf: os.DevNull, Servers: []string{server}})
	settings := map[string]string{
		SettingAllowedNetworks: l.addr("1.0/24") + " " + l.addr6("1::/64"),
		SettingCanaries:        strings.Join(list, ", "),
		SettingConnectTimeout:  "500ms",
	}
	ctx := t.Context()
	round := func(mode mamoriv1.Mode) *mamoriv1.ControlStatus {
		t.Helper()
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mode, Settings: settings}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		return status(t, c)
	}
	st := round(mamoriv1.Mode_MODE_MONITOR)
	for k, want := range canaries {
		if got := st.Evidence["canary "+k]; !strings.HasPrefix(got, want+":") {
			t.Errorf("monitor: canary %s: %q, want %s", k, got, want)
		}
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Errorf("monitor: %v %q", st.State, st.Detail)
	}
	st = round(mamoriv1.Mode_MODE_ENFORCE)
	for k := range canaries {
		// A dropped datagram fails its send (EPERM); a dropped SYN is
		// retried by the kernel until the connect times out.
		want := OutcomeBlocked
		if !strings.Contains(k, "/") {
			want = OutcomeTimeout
		}
		if got := st.Evidence["canary "+k]; !strings.HasPrefix(got, want+":") {
			t.Errorf("enforce: canary %s: %q, want %s", k, got, want)
		}
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("enforce: %v %q", st.State, st.Detail)
	}
}

// TestBoot: the ruleset the agent last applied is kept on disk and put back
// by Boot (what `mamori-agent isolation-boot` runs before the network comes
// up) after a reboot lost the table; forwarding goes off again; an
// interface that appeared while the agent was down is a finding when the
// agent starts, against the baseline on disk.
func TestBoot(t *testing.T) {
	l := newLab(t)
	server, canary := l.addr("9.1:7443"), l.addr("2.2:8080")
	l.listen(l.srv, server)
	l.listen(l.oth, canary)
	dir := t.TempDir()
	opts := Options{Netns: l.path(l.term), ResolvConf: os.DevNull, Servers: []string{server}, StateDir: dir}
	settings := map[string]string{
		SettingAllowedNetworks:   l.addr("1.0/24"),
		SettingCanaries:          canary,
		SettingAllowedInterfaces: "lo eth* usb*",
		SettingNoNewInterfaces:   "true",
		SettingConnectTimeout:    "300ms",
	}
	ctx := t.Context()
	pol := func(mode mamoriv1.Mode) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mode, Settings: settings}
	}
	reachable := func(addr string) bool {
		c, err := l.dial(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	c := New(opts)
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE)); err != nil {
		t.Fatal(err)
	}
	if st := status(t, c); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("enforce: %v %q", st.State, st.Detail)
	}
	want := DesiredRules(c.settings, c.agentServers)
	saved, err := loadState(dir)
	if err != nil || !slices.Equal(saved.Rules, want) || !saved.ForwardingOff || !slices.Equal(saved.Baseline, []string{"eth0", "lo"}) {
		t.Fatalf("saved state %+v, %v; want %d rules, forwarding off, baseline eth0 lo", saved, err, len(want))
	}

	// The agent is down; the terminal reboots: the table is gone,
	// forwarding is on by some default, and a USB adapter is plugged in.
	ac := l.nft()
	ac.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	if err := ac.Flush(); err != nil {
		t.Fatal(err)
	}
	l.setForwarding(l.term, "1")
	l.run("-n", l.term, "link", "add", "usb0", "type", "veth", "peer", "name", "usb1")
	if !reachable(canary) {
		t.Fatal("set-up: without the table the canary should be reachable")
	}

	start := time.Now()
	res, err := Boot(ctx, Options{Netns: l.path(l.term), StateDir: dir})
	t.Logf("boot: %+v in %v", res, time.Since(start).Round(time.Microsecond))
	if err != nil || res.Rules != len(want) || !res.ForwardingOff {
		t.Fatalf("boot: %+v, %v", res, err)
	}
	sys := &linuxSystem{netns: l.path(l.term), proc: "/proc"}
	fw := &nftFirewall{sys: sys}
	present, got, _, err := fw.live(ctx)
	if err != nil || len(tableDiff(present, fw.items(want), got)) != 0 {
		t.Errorf("after boot the table differs: %v %v", tableDiff(present, fw.items(want), got), err)
	}
	if reachable(canary) {
		t.Errorf("after boot the canary is reachable")
	}
	if !reachable(server) {
		t.Errorf("after boot the server is not reachable")
	}
	if l.forwarding(l.term) != "0" {
		t.Errorf("after boot ip_forward = %s", l.forwarding(l.term))
	}

	// The agent starts: usb0 appeared while it was down.
	em := &controltest.Emitter{}
	o2 := opts
	o2.Emitter = em
	c2 := New(o2)
	if err := c2.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE)); err != nil {
		t.Fatal(err)
	}
	st := status(t, c2)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || st.Evidence["interfaces.unexpected"] != "usb0, usb1" ||
		!containsAttr(kinds(em.Events(), KindFinding), "finding", "interface usb0") {
		t.Errorf("agent start after usb0 appeared: %v %q, unexpected %q", st.State, st.Detail, st.Evidence["interfaces.unexpected"])
	}

	// Monitor mode: nothing for the next boot.
	if err := c2.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR)); err != nil {
		t.Fatal(err)
	}
	if res, err := Boot(ctx, Options{Netns: l.path(l.term), StateDir: dir}); err != nil || res.Rules != 0 {
		t.Errorf("boot after monitor mode: %+v %v", res, err)
	}
	if l.tables()["1 "+TableName] {
		t.Errorf("boot after monitor mode put a table in place")
	}
}

// dialMarked connects from the terminal with SO_MARK set.
func (l *lab) dialMarked(addr string, mark uint32) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.t.Context(), 500*time.Millisecond)
	defer cancel()
	return (&linuxSystem{netns: l.path(l.term)}).dial(ctx, "tcp", addr, mark)
}

// TestNetworkProof: in enforce mode the control also measures whether the
// network itself stops the canaries (marked probes past its own table),
// and the mark opens nothing but the canaries.
func TestNetworkProof(t *testing.T) {
	l := newLab(t)
	server, canary, other := l.addr("9.1:7443"), l.addr("2.2:8080"), l.addr("2.2:8081")
	l.listen(l.srv, server)
	l.listen(l.oth, canary)
	l.listen(l.oth, other) // same host, not a canary
	em := &controltest.Emitter{}
	c := New(Options{Emitter: em, Netns: l.path(l.term), ResolvConf: os.DevNull, Servers: []string{server}})
	settings := map[string]string{
		SettingAllowedNetworks:   l.addr("1.0/24"),
		SettingCanaries:          canary + ", " + l.addr("2.2") + "/icmp",
		SettingConnectTimeout:    "300ms",
		SettingRequireNetwork:    "true",
		SettingAllowedInterfaces: "lo eth*",
	}
	ctx := t.Context()
	round := func() *mamoriv1.ControlStatus {
		t.Helper()
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: settings}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		return status(t, c)
	}

	// The router forwards between the tiers: only the terminal's table
	// separates them.
	st := round()
	np := st.Evidence["network_proof"]
	if !strings.HasPrefix(np, "the network does NOT separate the tiers") || !strings.Contains(np, canary+" reachable") ||
		!strings.Contains(np, l.addr("2.2")+"/icmp reachable") {
		t.Errorf("network proof through a forwarding router: %q", np)
	}
	if !strings.HasPrefix(st.Evidence["canary "+canary], OutcomeTimeout) {
		t.Errorf("the terminal's own proof: %q", st.Evidence["canary "+canary])
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || !strings.Contains(st.Detail, "the network itself does not stop canary "+canary) {
		t.Errorf("require_network_separation: %v %q", st.State, st.Detail)
	}
	// The mark opens the canaries and nothing else.
	if conn, err := l.dialMarked(canary, ProbeMark); err != nil {
		t.Errorf("marked dial to the canary: %v", err)
	} else {
		conn.Close()
	}
	for _, x := range []struct {
		addr string
		mark uint32
	}{{other, ProbeMark}, {canary, 0}, {canary, ProbeMark + 1}} {
		if conn, err := l.dialMarked(x.addr, x.mark); err == nil {
			conn.Close()
			t.Errorf("dial %s with mark %#x went through the table", x.addr, x.mark)
		}
	}

	// The router stops forwarding: the network separates the tiers.
	l.setForwarding(l.srv, "0")
	st = round()
	if np := st.Evidence["network_proof"]; !strings.HasPrefix(np, "the network separates the tiers: 2 of 2") {
		t.Errorf("network proof behind a separating router: %q", np)
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("separated: %v %q", st.State, st.Detail)
	}
}
