//go:build linux

package isolation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

type linuxSystem struct {
	netns string
	proc  string
	fw    *nftFirewall
}

func newSystem(o Options) (system, error) {
	s := &linuxSystem{netns: o.Netns, proc: o.Proc}
	s.fw = &nftFirewall{sys: s}
	return s, nil
}

// in runs f on a fresh OS thread moved into the network namespace. The
// thread is never unlocked: it ends with its goroutine, so no other
// goroutine ever runs in the wrong namespace.
func (s *linuxSystem) in(f func() error) error {
	if s.netns == "" {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic in network namespace %s: %v", s.netns, r)
			}
		}()
		fd, err := unix.Open(s.netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", s.netns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", s.netns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// routes reads /proc/thread-self/net/{route,ipv6_route}: the tables of the
// namespace of the thread that reads them.
func (s *linuxSystem) routes() ([]Route, error) {
	var out []Route
	err := s.in(func() error {
		dir := filepath.Join(s.proc, "thread-self", "net")
		b, err := readLimited(filepath.Join(dir, "route"))
		if err != nil {
			return err
		}
		v4, err := ParseRoutes(b)
		if err != nil {
			return err
		}
		out = append(out, v4...)
		b, err = readLimited(filepath.Join(dir, "ipv6_route"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // IPv6 disabled
		}
		if err != nil {
			return err
		}
		v6, err := ParseIPv6Routes(b)
		out = append(out, v6...)
		return err
	})
	return out, err
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

func (s *linuxSystem) interfaces() ([]string, error) {
	var names []string
	err := s.in(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	return names, err
}

func (s *linuxSystem) dial(ctx context.Context, network, addr string, mark uint32) (net.Conn, error) {
	var c net.Conn
	err := s.in(func() error {
		// An address literal: the dialer resolves nothing and opens the
		// socket on this thread, inside the namespace.
		var d net.Dialer
		if mark != 0 {
			d.Control = func(_, _ string, raw syscall.RawConn) error { return setMark(raw, mark) }
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listenICMP opens a raw ICMP socket (root, or CAP_NET_RAW) on a thread
// inside the namespace: the socket stays in it.
func (s *linuxSystem) listenICMP(v6 bool, mark uint32) (net.PacketConn, error) {
	var pc net.PacketConn
	err := s.in(func() error {
		var lc net.ListenConfig
		if mark != 0 {
			lc.Control = func(_, _ string, raw syscall.RawConn) error { return setMark(raw, mark) }
		}
		var err error
		// A raw IPv4 socket's reads come without the IP header (the net
		// package strips it), as ICMP parsing wants.
		if v6 {
			pc, err = lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
		} else {
			pc, err = lc.ListenPacket(context.Background(), "ip4:icmp", "0.0.0.0")
		}
		return err
	})
	return pc, err
}

// setMark sets SO_MARK (needs CAP_NET_ADMIN).
func setMark(raw syscall.RawConn, mark uint32) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	}); err != nil {
		return err
	}
	return serr
}

func (s *linuxSystem) classify(err error) string {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return OutcomeBlocked
	case errors.Is(err, unix.ECONNREFUSED):
		return OutcomeRefused
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH):
		return OutcomeUnreachable
	case errors.Is(err, unix.ETIMEDOUT):
		return OutcomeTimeout
	}
	return OutcomeError
}

func (s *linuxSystem) firewall() firewall { return s.fw }

// Where the kernel keeps the forwarding switches (per network namespace:
// read and written from a thread inside it).
const (
	sysctlIPv4Forward = "sys/net/ipv4/ip_forward"
	sysctlIPv6Forward = "sys/net/ipv6/conf/all/forwarding"
)

func (s *linuxSystem) forwarding() (Forwarding, error) {
	var fw Forwarding
	err := s.in(func() error {
		for _, x := range []struct {
			name string
			on   *bool
		}{{sysctlIPv4Forward, &fw.IPv4}, {sysctlIPv6Forward, &fw.IPv6}} {
			b, err := os.ReadFile(filepath.Join(s.proc, x.name))
			if errors.Is(err, fs.ErrNotExist) && x.name == sysctlIPv6Forward {
				continue // IPv6 disabled
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", x.name, err)
			}
			*x.on = strings.TrimSpace(string(b)) != "0"
		}
		return nil
	})
	return fw, err
}

func (s *linuxSystem) disableForwarding(which Forwarding) error {
	return s.in(func() error {
		var errs []error
		if which.IPv4 {
			errs = append(errs, os.WriteFile(filepath.Join(s.proc, sysctlIPv4Forward), []byte("0\n"), 0o644))
		}
		if which.IPv6 {
			errs = append(errs, os.WriteFile(filepath.Join(s.proc, sysctlIPv6Forward), []byte("0\n"), 0o644))
		}
		return errors.Join(errs...)
	})
}

func (s *linuxSystem) defaultResolvConf() string { return "/etc/resolv.conf" }

// nftFirewall keeps the table inet "mamori" over netlink.
type nftFirewall struct{ sys *linuxSystem }

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// conn opens a netlink connection in the namespace.
func (f *nftFirewall) conn() (*nftables.Conn, error) {
	if f.sys.netns == "" {
		return nftables.New(nftables.AsLasting())
	}
	fd, err := unix.Open(f.sys.netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", f.sys.netns, err)
	}
	defer unix.Close(fd)
	return nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
}

func chainOf(name string) *nftables.Chain {
	drop := nftables.ChainPolicyDrop
	hook := nftables.ChainHookInput
	switch name {
	case ChainOutput:
		hook = nftables.ChainHookOutput
	case ChainForward:
		hook = nftables.ChainHookForward
	}
	return &nftables.Chain{Name: name, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &drop}
}

func (f *nftFirewall) apply(ctx context.Context, rules []Rule) error {
	c, err := f.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	// Add, delete, add: the batch replaces the table whether or not it
	// exists, in one transaction — there is no moment without rules.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	chains := map[string]*nftables.Chain{}
	for _, name := range Chains {
		chains[name] = c.AddChain(chainOf(name))
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: table, Chain: chains[r.Chain], Exprs: encode(r),
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
	}
	return c.Flush()
}

func (f *nftFirewall) items(rules []Rule) []Item {
	var out []Item
	for _, name := range Chains {
		out = append(out, chainItem(chainOf(name)))
		for _, r := range rules {
			if r.Chain == name {
				es := encode(r)
				out = append(out, Item{Chain: name, Tag: r.String(), Body: canon(es), Text: nftText(es)})
			}
		}
	}
	return out
}

func chainItem(ch *nftables.Chain) Item {
	body := fmt.Sprintf("type %s", ch.Type)
	text := body
	if ch.Hooknum != nil {
		body += fmt.Sprintf(" hook %d", *ch.Hooknum)
		text += " hook " + hookName(*ch.Hooknum)
	}
	if ch.Priority != nil {
		body += fmt.Sprintf(" priority %d", *ch.Priority)
		text += fmt.Sprintf(" priority %d", *ch.Priority)
	}
	if ch.Policy != nil {
		body += fmt.Sprintf(" policy %d", *ch.Policy)
		if *ch.Policy == nftables.ChainPolicyDrop {
			text += "; policy drop"
		} else {
			text += "; policy accept"
		}
	}
	return Item{Chain: ch.Name, Tag: "chain " + ch.Name, Body: body, Text: text, IsChain: true}
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

func (f *nftFirewall) live(ctx context.Context) (bool, []Item, uint64, error) {
	c, err := f.conn()
	if err != nil {
		return false, nil, 0, err
	}
	defer c.CloseLasting()
	present, err := tableExists(c)
	if err != nil || !present {
		return false, nil, 0, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, nil, 0, fmt.Errorf("list chains: %w", err)
	}
	var items []Item
	var dropped uint64
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != TableName {
			continue
		}
		items = append(items, chainItem(ch))
		rs, err := c.GetRules(table, ch)
		if err != nil {
			return false, nil, 0, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rs {
			tag, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			items = append(items, Item{Chain: ch.Name, Tag: tag, Body: canon(r.Exprs), Text: nftText(r.Exprs)})
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					dropped += ctr.Packets
				}
			}
		}
	}
	return true, items, dropped, nil
}

func tableExists(c *nftables.Conn) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

func (f *nftFirewall) remove(ctx context.Context) (bool, error) {
	c, err := f.conn()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	present, err := tableExists(c)
	if err != nil || !present {
		return false, err
	}
	c.DelTable(table)
	return true, c.Flush()
}

// canon is the text compared for drift: every expression with its
// parameters, counters without their values.
func canon(es []expr.Any) string {
	var b strings.Builder
	for _, e := range es {
		if _, ok := e.(*expr.Counter); ok {
			b.WriteString("counter;")
			continue
		}
		fmt.Fprintf(&b, "%T%+v;", e, e)
	}
	return b.String()
}

// encode turns a Rule into nftables expressions.
func encode(r Rule) []expr.Any {
	var es []expr.Any
	cmp := func(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }
	if r.Mark != 0 {
		es = append(es, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, cmp(binaryutil.NativeEndian.PutUint32(r.Mark)))
	}
	switch {
	case r.Iface != "":
		key := expr.MetaKeyOIFNAME
		if r.Chain == ChainInput {
			key = expr.MetaKeyIIFNAME
		}
		es = append(es, &expr.Meta{Key: key, Register: 1}, cmp(ifname(r.Iface)))
	case r.Established:
		es = append(es,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	case r.ICMPv6ND:
		es = append(es,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmp([]byte{unix.NFPROTO_IPV6}),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp([]byte{unix.IPPROTO_ICMPV6}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{136}})
	}
	if r.Net.IsValid() {
		es = append(es, matchNet(r.Net, r.Chain == ChainInput)...)
	}
	if r.Proto == "tcp" || r.Proto == "udp" {
		proto := byte(unix.IPPROTO_TCP)
		if r.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		es = append(es, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp([]byte{proto}))
		if r.Port != 0 {
			es = append(es,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				cmp(binaryutil.BigEndian.PutUint16(r.Port)))
		}
	}
	if r.Proto == "icmp" {
		proto := byte(unix.IPPROTO_ICMP)
		if r.Net.Addr().Is6() {
			proto = unix.IPPROTO_ICMPV6
		}
		es = append(es, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp([]byte{proto}))
	}
	if r.Drop {
		return append(es, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	return append(es, &expr.Verdict{Kind: expr.VerdictAccept})
}

// matchNet matches the source (input) or destination (output) address
// against p.
func matchNet(p netip.Prefix, source bool) []expr.Any {
	fam, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if source {
		off = 12
	}
	if p.Addr().Is6() {
		fam, off, n = unix.NFPROTO_IPV6, 24, 16
		if source {
			off = 8
		}
	}
	es := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if p.Bits() < p.Addr().BitLen() {
		mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: []byte(mask), Xor: make([]byte, n)})
	}
	return append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()})
}

// ifname pads an interface name as the kernel compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// ctConn opens a conntrack netlink connection in the namespace.
func (f *nftFirewall) ctConn() (*conntrack.Conn, error) {
	cfg := &netlink.Config{}
	if f.sys.netns != "" {
		fd, err := unix.Open(f.sys.netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", f.sys.netns, err)
		}
		defer unix.Close(fd)
		cfg.NetNS = fd
	}
	return conntrack.Dial(cfg)
}

func (f *nftFirewall) sessions(ctx context.Context) ([]Session, []netip.Addr, error) {
	var local []netip.Addr
	err := f.sys.in(func() error {
		as, err := net.InterfaceAddrs()
		for _, a := range as {
			if p, perr := netip.ParsePrefix(a.String()); perr == nil {
				local = append(local, p.Addr().Unmap())
			}
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list the terminal's addresses: %w", err)
	}
	c, err := f.ctConn()
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("dump conntrack: %w", err)
	}
	out := make([]Session, 0, len(flows))
	for _, fl := range flows {
		o := fl.TupleOrig
		out = append(out, Session{Proto: o.Proto.Protocol,
			Src:    netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort),
			Dst:    netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort),
			handle: conntrack.Flow{TupleOrig: fl.TupleOrig, TupleReply: fl.TupleReply, Zone: fl.Zone}})
	}
	return out, local, nil
}

func (f *nftFirewall) cut(ctx context.Context, ss []Session) (int, error) {
	c, err := f.ctConn()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n := 0
	var errs []error
	for _, x := range ss {
		fl, ok := x.handle.(conntrack.Flow)
		if !ok {
			continue
		}
		switch err := c.Delete(fl); {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT):
			// Ended on its own meanwhile.
		default:
			errs = append(errs, fmt.Errorf("%s: %w", x, err))
		}
	}
	return n, errors.Join(errs...)
}
