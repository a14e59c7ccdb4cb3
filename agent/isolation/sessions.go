package isolation

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Session is one connection the kernel tracks (conntrack), in its original
// direction: who sent the first packet to whom.
type Session struct {
	Proto uint8 // IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6)
	Src   netip.AddrPort
	Dst   netip.AddrPort
	// handle is what the system needs to delete the entry.
	handle any
}

func (s Session) String() string {
	return protoName(s.Proto) + " " + s.Src.String() + " → " + s.Dst.String()
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	}
	return "proto " + strconv.Itoa(int(p))
}

// SessionAllowed says whether the ruleset for s and the agent's servers
// would have let session x begin, local being the terminal's own
// addresses. A session that it would not have let begin must not survive
// the ruleset either: the table accepts established traffic, so a
// connection opened before enforcement (in monitor mode, or while the
// table had been deleted) would otherwise go on carrying data whenever
// another firewall on the terminal keeps connection tracking alive.
//
//   - loopback, and between the terminal's own addresses: allowed;
//   - from the terminal (source local): to an allowed network, or to an
//     allowed service or mamori server with its protocol and port;
//   - to the terminal (destination local): from an allowed network;
//   - through the terminal (neither local): only with allow_forwarding,
//     and then as the forward chain would, by destination.
func SessionAllowed(s Settings, agentServers []netip.AddrPort, local []netip.Addr, x Session) bool {
	src, dst := x.Src.Addr().Unmap(), x.Dst.Addr().Unmap()
	isLocal := func(a netip.Addr) bool { return a.IsLoopback() || slices.Contains(local, a) }
	if src.IsLoopback() || dst.IsLoopback() || isLocal(src) && isLocal(dst) {
		return true
	}
	inNets := func(a netip.Addr) bool { return inAllowed(s.AllowedNetworks, netip.PrefixFrom(a, a.BitLen())) }
	toService := func() bool {
		if x.Proto != 6 && x.Proto != 17 {
			return false
		}
		proto := protoName(x.Proto)
		ap := netip.AddrPortFrom(dst, x.Dst.Port())
		for _, sv := range s.AllowedServices {
			if sv.Proto == proto && sv.Addr == ap {
				return true
			}
		}
		if proto == "tcp" {
			return slices.Contains(agentServers, ap) || slices.Contains(s.Servers, ap)
		}
		return false
	}
	switch {
	case isLocal(src):
		return inNets(dst) || toService()
	case isLocal(dst):
		return inNets(src)
	default:
		return s.AllowForwarding && (inNets(dst) || toService())
	}
}

// forbiddenSessions picks the sessions SessionAllowed refuses.
func forbiddenSessions(s Settings, agentServers []netip.AddrPort, local []netip.Addr, all []Session) []Session {
	var out []Session
	for _, x := range all {
		if !SessionAllowed(s, agentServers, local, x) {
			out = append(out, x)
		}
	}
	return out
}

// describeSessions names at most n sessions, for an event.
func describeSessions(ss []Session, n int) string {
	var b []byte
	for i, x := range ss {
		if i == n {
			b = fmt.Appendf(b, "; … %d more", len(ss)-n)
			break
		}
		if i > 0 {
			b = append(b, "; "...)
		}
		b = append(b, x.String()...)
	}
	return string(b)
}
