package isolation

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
)

// Route is one entry of the kernel's routing table, as /proc/net/route and
// /proc/net/ipv6_route show it.
type Route struct {
	Iface   string
	Dst     netip.Prefix
	Gateway netip.Addr // invalid when the destination is on-link
	Metric  uint32
	Flags   uint32
}

// Route flags (linux/route.h, linux/ipv6_route.h).
const (
	rtfUp      = 0x0001
	rtfGateway = 0x0002
	rtfReject  = 0x0200
	rtfLocal   = 0x80000000
)

// maxRoutes bounds what a parser returns: a terminal has a handful.
const maxRoutes = 100000

// Default reports whether r is a default route.
func (r Route) Default() bool { return r.Dst.Bits() == 0 }

// Path reports whether r is a way out of the machine: up, not a reject
// (unreachable, blackhole, prohibit) route and not a local address.
func (r Route) Path() bool {
	return r.Flags&rtfUp != 0 && r.Flags&rtfReject == 0 && r.Flags&rtfLocal == 0
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Default() {
		s = "default"
		if r.Dst.Addr().Is6() {
			s = "default (IPv6)"
		}
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s + " dev " + r.Iface
}

// ParseRoutes parses /proc/net/route (IPv4). Addresses are printed by the
// kernel as the raw 32-bit value in host byte order, so they are decoded
// with the native byte order.
func ParseRoutes(b []byte) ([]Route, error) {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) == 0 || !bytes.HasPrefix(bytes.TrimSpace(lines[0]), []byte("Iface")) {
		return nil, fmt.Errorf("route table: no header line")
	}
	var out []Route
	for n, line := range lines[1:] {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("route table line %d: %d fields, want at least 8", n+2, len(f))
		}
		if len(out) >= maxRoutes {
			return nil, fmt.Errorf("route table: more than %d routes", maxRoutes)
		}
		dst, err1 := hex32(f[1])
		gw, err2 := hex32(f[2])
		flags, err3 := strconv.ParseUint(string(f[3]), 16, 32)
		metric, err4 := strconv.ParseUint(string(f[6]), 10, 32)
		mask, err5 := hex32(f[7])
		if err := firstErr(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("route table line %d: %w", n+2, err)
		}
		m := binary.BigEndian.Uint32(mask[:])
		ones := bits.OnesCount32(m)
		if m != ^uint32(0)<<(32-ones) {
			return nil, fmt.Errorf("route table line %d: mask %v is not contiguous", n+2, netip.AddrFrom4(mask))
		}
		r := Route{
			Iface:  string(f[0]),
			Dst:    netip.PrefixFrom(netip.AddrFrom4(dst), ones).Masked(),
			Metric: uint32(metric),
			Flags:  uint32(flags),
		}
		if flags&rtfGateway != 0 {
			r.Gateway = netip.AddrFrom4(gw)
		}
		out = append(out, r)
	}
	return out, nil
}

func hex32(b []byte) ([4]byte, error) {
	v, err := strconv.ParseUint(string(b), 16, 32)
	if err != nil || len(b) != 8 {
		return [4]byte{}, fmt.Errorf("%q is not 8 hex digits", clipB(b))
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return a, nil
}

// ParseIPv6Routes parses /proc/net/ipv6_route: destination, prefix length,
// source, source prefix length, next hop, metric, use count, reference
// count, flags, interface — addresses as 32 hex digits in network order.
func ParseIPv6Routes(b []byte) ([]Route, error) {
	var out []Route
	for n, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 10 {
			return nil, fmt.Errorf("ipv6 route table line %d: %d fields, want 10", n+1, len(f))
		}
		if len(out) >= maxRoutes {
			return nil, fmt.Errorf("ipv6 route table: more than %d routes", maxRoutes)
		}
		dst, err1 := hex128(f[0])
		plen, err2 := strconv.ParseUint(string(f[1]), 16, 8)
		gw, err3 := hex128(f[4])
		metric, err4 := strconv.ParseUint(string(f[5]), 16, 32)
		flags, err5 := strconv.ParseUint(string(f[8]), 16, 32)
		if err := firstErr(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("ipv6 route table line %d: %w", n+1, err)
		}
		if plen > 128 {
			return nil, fmt.Errorf("ipv6 route table line %d: prefix length %d", n+1, plen)
		}
		r := Route{
			Iface:  string(f[9]),
			Dst:    netip.PrefixFrom(dst, int(plen)).Masked(),
			Metric: uint32(metric),
			Flags:  uint32(flags),
		}
		if flags&rtfGateway != 0 || !gw.IsUnspecified() {
			r.Gateway = gw
		}
		out = append(out, r)
	}
	return out, nil
}

func hex128(b []byte) (netip.Addr, error) {
	var a [16]byte
	if len(b) != 32 {
		return netip.Addr{}, fmt.Errorf("%q is not 32 hex digits", clipB(b))
	}
	if _, err := hex.Decode(a[:], b); err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not 32 hex digits", clipB(b))
	}
	return netip.AddrFrom16(a), nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func clipB(b []byte) string { return clip(string(b)) }
