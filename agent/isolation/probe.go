package isolation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxNameservers is how many nameservers the DNS check asks (as glibc).
const maxNameservers = 3

// ParseResolvConf returns the nameserver addresses of a resolv.conf, at
// most three, port 53. Other lines are ignored; a nameserver that is not an
// IP address is an error.
func ParseResolvConf(b []byte) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("resolv.conf: nameserver %q is not an IP address", clip(f[1]))
		}
		if len(out) < maxNameservers {
			out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("resolv.conf: %w", err)
	}
	return out, nil
}

// dnsQuery builds an A or AAAA query for name.
func dnsQuery(id uint16, name string, qtype dnsmessage.Type) ([]byte, error) {
	n, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, err
	}
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: n, Type: qtype, Class: dnsmessage.ClassINET}},
	}
	return m.Pack()
}

// ParseDNSAnswer reads a reply to query id and returns the A/AAAA addresses
// in it (CNAME chains included). A reply with another id, not a response,
// or with an error code other than NXDOMAIN is an error; NXDOMAIN and an
// empty answer give no addresses.
func ParseDNSAnswer(b []byte, id uint16) ([]netip.Addr, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return nil, fmt.Errorf("dns reply: %w", err)
	}
	if !h.Response || h.ID != id {
		return nil, errors.New("dns reply: not a response to our query")
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
	default:
		return nil, fmt.Errorf("dns reply: %v", h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, fmt.Errorf("dns reply: %w", err)
	}
	var out []netip.Addr
	for len(out) < 64 {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dns reply: %w", err)
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return nil, fmt.Errorf("dns reply: %w", err)
			}
			out = append(out, netip.AddrFrom4(r.A))
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return nil, fmt.Errorf("dns reply: %w", err)
			}
			out = append(out, netip.AddrFrom16(r.AAAA))
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, fmt.Errorf("dns reply: %w", err)
			}
		}
	}
	return out, nil
}

// resolver asks nameservers directly over UDP, through the platform so
// that sockets open where the control observes.
type resolver struct {
	sys     system
	servers []netip.AddrPort
	timeout time.Duration
	system  bool // ask the system resolver instead of servers
}

// DNSResult is the outcome of resolving a name.
type DNSResult struct {
	Addrs  []netip.Addr
	Server netip.AddrPort // which nameserver answered with addresses
	Err    error          // no nameserver gave an answer
}

// lookup asks every nameserver at once for A and AAAA records and returns
// the first answer with addresses, or, when none has any, whether at least
// one nameserver answered at all.
func (r resolver) lookup(ctx context.Context, name string) DNSResult {
	if r.system {
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return DNSResult{}
		}
		return DNSResult{Addrs: addrs, Err: err}
	}
	if len(r.servers) == 0 {
		return DNSResult{Err: errors.New("no nameserver configured")}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	type answer struct {
		server netip.AddrPort
		addrs  []netip.Addr
		err    error
	}
	ch := make(chan answer, 2*len(r.servers))
	for _, srv := range r.servers {
		for _, qt := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
			go func() {
				addrs, err := r.exchange(ctx, srv, name, qt)
				ch <- answer{srv, addrs, err}
			}()
		}
	}
	var errs []error
	answered := false
	for range 2 * len(r.servers) {
		a := <-ch
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.server, a.err))
			continue
		}
		answered = true
		if len(a.addrs) > 0 {
			return DNSResult{Addrs: a.addrs, Server: a.server}
		}
	}
	if answered {
		return DNSResult{}
	}
	return DNSResult{Err: errors.Join(errs...)}
}

func (r resolver) exchange(ctx context.Context, srv netip.AddrPort, name string, qt dnsmessage.Type) ([]netip.Addr, error) {
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q, err := dnsQuery(id, name, qt)
	if err != nil {
		return nil, err
	}
	conn, err := r.sys.dial(ctx, "udp", srv.String(), 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		addrs, err := ParseDNSAnswer(buf[:n], id)
		if err == nil {
			return addrs, nil
		}
		// A stray or forged datagram: keep waiting until the deadline.
	}
}

// Canary outcomes.
const (
	OutcomeReachable   = "reachable"   // connected: the other tier is reachable
	OutcomeRefused     = "refused"     // something answered with a reset
	OutcomeBlocked     = "blocked"     // the local firewall refused the packet
	OutcomeTimeout     = "timeout"     // no answer within the time-out
	OutcomeUnreachable = "unreachable" // no route, or an ICMP unreachable
	OutcomeUnresolved  = "unresolved"  // the canary's name does not resolve
	OutcomeError       = "error"       // the check itself failed
)

// CanaryResult is the outcome of one canary: one of the Outcome values and
// a detail for a person.
type CanaryResult struct {
	Target  Target
	Outcome string
	Detail  string
}

// probeCanaries connects to every canary at once, each bounded by timeout.
// A non-zero mark marks the probes' packets (the network proof).
func probeCanaries(ctx context.Context, sys system, res resolver, ts []Target, timeout time.Duration, mark uint32) []CanaryResult {
	out := make([]CanaryResult, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() { out[i] = probeCanary(ctx, sys, res, t, timeout, mark) })
	}
	wg.Wait()
	return out
}

func probeCanary(ctx context.Context, sys system, res resolver, t Target, timeout time.Duration, mark uint32) CanaryResult {
	addrs := []netip.Addr{t.Addr}
	if !t.Addr.IsValid() {
		r := res.lookup(ctx, t.Host)
		switch {
		case r.Err != nil:
			return CanaryResult{t, OutcomeUnresolved, "no nameserver answered: " + r.Err.Error()}
		case len(r.Addrs) == 0:
			return CanaryResult{t, OutcomeUnresolved, "the name does not resolve"}
		}
		addrs = r.Addrs
		if len(addrs) > 4 {
			addrs = addrs[:4]
		}
	}
	// The worst outcome over the addresses counts.
	best := CanaryResult{Target: t, Outcome: ""}
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, t.Port)
		var o, detail string
		switch t.Proto {
		case "udp":
			o, detail = udpOnce(ctx, sys, ap, timeout, mark)
		case "icmp":
			o, detail = pingOnce(ctx, sys, a, timeout, mark)
		default:
			o, detail = dialOnce(ctx, sys, ap, timeout, mark)
		}
		if !t.Addr.IsValid() {
			if t.Proto == "icmp" {
				detail = a.String() + ": " + detail
			} else {
				detail = ap.String() + ": " + detail
			}
		}
		if best.Outcome == "" || outcomeRank(o) > outcomeRank(best.Outcome) {
			best.Outcome, best.Detail = o, detail
		}
	}
	return best
}

func outcomeRank(o string) int {
	return slices.Index([]string{OutcomeUnresolved, OutcomeBlocked, OutcomeUnreachable, OutcomeTimeout, OutcomeError, OutcomeRefused, OutcomeReachable}, o)
}

func dialOnce(ctx context.Context, sys system, ap netip.AddrPort, timeout time.Duration, mark uint32) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	conn, err := sys.dial(ctx, "tcp", ap.String(), mark)
	took := time.Since(start).Round(time.Millisecond)
	if err == nil {
		conn.Close()
		return OutcomeReachable, fmt.Sprintf("connected in %v", took)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return OutcomeTimeout, fmt.Sprintf("no answer within %v", timeout)
	}
	o := sys.classify(err)
	return o, fmt.Sprintf("%s after %v", shortErr(err), took)
}

// udpProbe is what a UDP canary is sent: a DNS query for the root's name
// servers on port 53 (any DNS server answers it), else a short line a
// UDP echo service sends back.
func udpProbe(port uint16) []byte {
	if port == 53 {
		var idb [2]byte
		_, _ = rand.Read(idb[:])
		n, _ := dnsmessage.NewName(".")
		m := dnsmessage.Message{Header: dnsmessage.Header{ID: binary.BigEndian.Uint16(idb[:]), RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: n, Type: dnsmessage.TypeNS, Class: dnsmessage.ClassINET}}}
		if b, err := m.Pack(); err == nil {
			return b
		}
	}
	return []byte("mamori isolation canary\n")
}

// udpOnce sends one datagram and waits for anything back: an answer means
// the other tier is reachable over UDP; an ICMP port unreachable
// (ECONNREFUSED on the connected socket) that packets get out and
// something answers; silence is a time-out — weaker proof than for TCP,
// since a UDP service may stay silent (use a DNS server or an echo
// service as the canary).
func udpOnce(ctx context.Context, sys system, ap netip.AddrPort, timeout time.Duration, mark uint32) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	conn, err := sys.dial(ctx, "udp", ap.String(), mark)
	if err != nil {
		return sys.classify(err), shortErr(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(timeout))
	if _, err := conn.Write(udpProbe(ap.Port())); err != nil {
		return sys.classify(err), fmt.Sprintf("send: %s", shortErr(err))
	}
	buf := make([]byte, 1500)
	_, err = conn.Read(buf)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		return OutcomeReachable, fmt.Sprintf("answered in %v", took)
	case isTimeout(err):
		return OutcomeTimeout, fmt.Sprintf("no answer within %v", timeout)
	}
	return sys.classify(err), fmt.Sprintf("%s after %v", shortErr(err), took)
}

// pingOnce sends one ICMP (ICMPv6) echo request and waits for the echo
// reply from a: a reply means the other tier is reachable; a destination
// unreachable about it, that it is not.
func pingOnce(ctx context.Context, sys system, a netip.Addr, timeout time.Duration, mark uint32) (string, string) {
	start := time.Now()
	pc, err := sys.listenICMP(a.Is6(), mark)
	if err != nil {
		if errors.Is(err, errNotObserved) {
			return OutcomeError, "ICMP canaries are not checked on this system"
		}
		return OutcomeError, "open an ICMP socket: " + shortErr(err)
	}
	defer pc.Close()
	dl := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = pc.SetDeadline(dl)
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := int(binary.BigEndian.Uint16(idb[:]))
	var typ icmp.Type = ipv4.ICMPTypeEcho
	proto := 1
	if a.Is6() {
		typ, proto = ipv6.ICMPTypeEchoRequest, 58
	}
	req, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("mamori isolation canary")}}).Marshal(nil)
	if err != nil {
		return OutcomeError, err.Error()
	}
	if _, err := pc.WriteTo(req, &net.IPAddr{IP: a.AsSlice()}); err != nil {
		return sys.classify(err), fmt.Sprintf("send: %s", shortErr(err))
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if isTimeout(err) {
				return OutcomeTimeout, fmt.Sprintf("no echo reply within %v", timeout)
			}
			return sys.classify(err), shortErr(err)
		}
		took := time.Since(start).Round(time.Millisecond)
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		src := netip.Addr{}
		if ip, ok := from.(*net.IPAddr); ok {
			src, _ = netip.AddrFromSlice(ip.IP)
			src = src.Unmap()
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) && body.ID == id && body.Seq == 1 && src == a {
				return OutcomeReachable, fmt.Sprintf("echo reply in %v", took)
			}
		case *icmp.DstUnreach:
			if echoOf(body.Data, a, id, proto) {
				return OutcomeUnreachable, fmt.Sprintf("destination unreachable from %s after %v", src, took)
			}
		}
		// Someone else's ICMP (a raw socket sees all): keep reading.
	}
}

// echoOf says whether data, the start of the packet an ICMP error is
// about, is our echo request to a.
func echoOf(data []byte, a netip.Addr, id, proto int) bool {
	hl, dstOff, dstLen := 0, 16, 4
	if proto == 58 {
		hl, dstOff, dstLen = 40, 24, 16
	} else if len(data) > 0 {
		hl = int(data[0]&0x0f) * 4
	}
	if len(data) < hl+8 || len(data) < dstOff+dstLen {
		return false
	}
	dst, _ := netip.AddrFromSlice(data[dstOff : dstOff+dstLen])
	return dst.Unmap() == a && int(binary.BigEndian.Uint16(data[hl+4:hl+6])) == id
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortErr drops the "dial tcp a->b:" prefix.
func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
