package isolation

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Setting names (policy control "isolation"). docs/policy.md documents them.
const (
	SettingAllowedNetworks   = "allowed_networks"
	SettingAllowedServices   = "allowed_services"
	SettingServers           = "servers"
	SettingCanaries          = "canaries"
	SettingForbiddenDNSName  = "forbidden_dns_name"
	SettingAllowedInterfaces = "allowed_interfaces"
	SettingNoNewInterfaces   = "no_new_interfaces"
	SettingConnectTimeout    = "connect_timeout"
	SettingAllowForwarding   = "allow_forwarding"
	SettingRequireNetwork    = "require_network_separation"
)

var knownSettings = []string{
	SettingAllowedNetworks, SettingAllowedServices, SettingServers, SettingCanaries,
	SettingForbiddenDNSName, SettingAllowedInterfaces, SettingNoNewInterfaces, SettingConnectTimeout,
	SettingAllowForwarding, SettingRequireNetwork,
}

// Limits on the settings. They keep the ruleset, the probes of one round and
// the evidence (at most 64 entries reach the server) bounded.
const (
	MaxAllowedNetworks   = 64
	MaxAllowedServices   = 64
	MaxServers           = 16
	MaxCanaries          = 16
	MaxAllowedInterfaces = 32
	maxTargetLen         = 200
	// Narrowest prefix lengths accepted as "allowed": a tier's network is
	// never a /7 or a whole IPv6 /15.
	minIPv4Bits = 8
	minIPv6Bits = 16

	DefaultConnectTimeout = 2 * time.Second
	MinConnectTimeout     = 100 * time.Millisecond
	MaxConnectTimeout     = 3 * time.Second
)

// Service is a host:port the terminal may connect to.
type Service struct {
	Addr  netip.AddrPort
	Proto string // "tcp" or "udp"
}

func (s Service) String() string { return s.Addr.String() + "/" + s.Proto }

// Target is a canary: a host (address or DNS name) and, for tcp and udp,
// a port that must be unreachable.
type Target struct {
	Host  string
	Port  uint16 // 0 for icmp
	Proto string // "tcp", "udp" or "icmp" (ICMP or ICMPv6 echo)
	// Addr is the host when it is an address literal.
	Addr netip.Addr
}

// String is the canary as the policy writes it: HOST:PORT (tcp),
// HOST:PORT/udp, HOST/icmp; IPv6 in brackets before a port.
func (t Target) String() string {
	if t.Proto == "icmp" {
		return t.Host + "/icmp"
	}
	s := t.Host + ":" + strconv.Itoa(int(t.Port))
	if t.Addr.IsValid() {
		s = netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	if t.Proto == "udp" {
		s += "/udp"
	}
	return s
}

// Settings are the parsed, validated settings of the control.
type Settings struct {
	AllowedNetworks   []netip.Prefix
	AllowedServices   []Service
	Servers           []netip.AddrPort // tcp
	Canaries          []Target
	ForbiddenDNSName  string // without the trailing dot; "" for none
	AllowedInterfaces []string
	NoNewInterfaces   bool
	ConnectTimeout    time.Duration
	// AllowForwarding: the terminal may route traffic for others (a VM
	// host); forwarded traffic is still limited to the allowed networks
	// and services. Otherwise forwarding is a finding, and enforce mode
	// switches it off and drops forwarded packets.
	AllowForwarding bool
	// RequireNetworkSeparation: in enforce mode, a canary that the
	// network proof (marked probes past mamori's table) reaches is a
	// finding — the network, not only this terminal, must separate the
	// tiers. Otherwise the network proof is evidence only.
	RequireNetworkSeparation bool
}

// ParseSettings reads and validates the control's settings. It refuses
// anything doubtful rather than guess: unknown keys, malformed or too broad
// networks, ports out of range, canaries inside allowed networks, names with
// control characters. All problems are reported, joined.
func ParseSettings(m map[string]string) (Settings, error) {
	s := Settings{ConnectTimeout: DefaultConnectTimeout}
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(knownSettings, k) {
			errs = append(errs, fmt.Errorf("unknown setting %q (known: %s)", clip(k), strings.Join(knownSettings, ", ")))
		}
	}
	field := func(key string, max int, each func(string) error) {
		v, ok := m[key]
		if !ok {
			return
		}
		items, err := splitList(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			return
		}
		if len(items) > max {
			errs = append(errs, fmt.Errorf("%s: %d entries; at most %d", key, len(items), max))
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			if seen[it] {
				errs = append(errs, fmt.Errorf("%s: %q listed twice", key, it))
				continue
			}
			seen[it] = true
			if err := each(it); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	}
	field(SettingAllowedNetworks, MaxAllowedNetworks, func(it string) error {
		p, err := ParseAllowedNetwork(it)
		if err == nil {
			s.AllowedNetworks = append(s.AllowedNetworks, p)
		}
		return err
	})
	field(SettingAllowedServices, MaxAllowedServices, func(it string) error {
		sv, err := ParseService(it)
		if err == nil {
			s.AllowedServices = append(s.AllowedServices, sv)
		}
		return err
	})
	field(SettingServers, MaxServers, func(it string) error {
		ap, err := parseAddrPort(it)
		if err == nil {
			s.Servers = append(s.Servers, ap)
		}
		return err
	})
	field(SettingCanaries, MaxCanaries, func(it string) error {
		t, err := ParseTarget(it)
		if err == nil {
			s.Canaries = append(s.Canaries, t)
		}
		return err
	})
	field(SettingAllowedInterfaces, MaxAllowedInterfaces, func(it string) error {
		if err := checkInterfacePattern(it); err != nil {
			return err
		}
		s.AllowedInterfaces = append(s.AllowedInterfaces, it)
		return nil
	})
	if v, ok := m[SettingForbiddenDNSName]; ok && v != "" {
		name, err := ParseDNSName(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", SettingForbiddenDNSName, err))
		}
		s.ForbiddenDNSName = name
	}
	for _, b := range []struct {
		key string
		dst *bool
	}{{SettingNoNewInterfaces, &s.NoNewInterfaces}, {SettingAllowForwarding, &s.AllowForwarding},
		{SettingRequireNetwork, &s.RequireNetworkSeparation}} {
		key, dst := b.key, b.dst
		v, ok := m[key]
		if !ok {
			continue
		}
		switch v {
		case "true":
			*dst = true
		case "false", "":
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not \"true\" or \"false\"", key, clip(v)))
		}
	}
	if v, ok := m[SettingConnectTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinConnectTimeout || d > MaxConnectTimeout {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration between %v and %v (e.g. \"2s\")",
				SettingConnectTimeout, clip(v), MinConnectTimeout, MaxConnectTimeout))
		} else {
			s.ConnectTimeout = d
		}
	}
	// A canary inside what is allowed would always be reachable: the policy
	// contradicts itself.
	for _, c := range s.Canaries {
		if !c.Addr.IsValid() {
			continue
		}
		for _, p := range s.AllowedNetworks {
			if p.Contains(c.Addr) {
				errs = append(errs, fmt.Errorf("%s: %s lies inside allowed network %s: it would always be reachable; pick an address in another tier",
					SettingCanaries, c, p))
			}
		}
		for _, sv := range s.AllowedServices {
			if sv.Addr.Addr() == c.Addr && sv.Addr.Port() == c.Port && sv.Proto == c.Proto {
				errs = append(errs, fmt.Errorf("%s: %s is also an allowed service", SettingCanaries, c))
			}
		}
		for _, sv := range s.Servers {
			if sv.Addr() == c.Addr && sv.Port() == c.Port && c.Proto == "tcp" {
				errs = append(errs, fmt.Errorf("%s: %s is also a server address", SettingCanaries, c))
			}
		}
	}
	return s, errors.Join(errs...)
}

// splitList splits a list separated by commas and/or white space. Control
// characters and non-ASCII bytes are refused: none of the values is text.
func splitList(v string) ([]string, error) {
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == ' ' || b == '\t' || b == '\n' || b == '\r' {
			continue
		}
		if b < 0x21 || b > 0x7e {
			return nil, fmt.Errorf("byte %#02x at offset %d: only printable ASCII, commas and spaces are allowed", b, i)
		}
	}
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}), nil
}

// ParseAllowedNetwork parses a CIDR an operator allows. It must be written
// in canonical form (no host bits), and not be so broad that it allows the
// other tiers too: 0.0.0.0/0 and ::/0 are refused, as is anything broader
// than an IPv4 /8 or an IPv6 /16.
func ParseAllowedNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form (e.g. 10.20.0.0/16)", clip(s))
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s: write IPv4 networks in IPv4 form", p)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%s would allow every address, other tiers included: list the tier's own networks", p)
	}
	if p.Addr().Is4() && p.Bits() < minIPv4Bits || p.Addr().Is6() && p.Bits() < minIPv6Bits {
		return netip.Prefix{}, fmt.Errorf("%s is broader than /%d (IPv4) or /%d (IPv6) and would take in other tiers: list narrower networks",
			p, minIPv4Bits, minIPv6Bits)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set: write %s", p, p.Masked())
	}
	return p, nil
}

// ParseService parses "ADDR:PORT" or "ADDR:PORT/tcp|udp" (IPv6 as
// "[ADDR]:PORT"). The default protocol is tcp.
func ParseService(s string) (Service, error) {
	hp, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return Service{}, fmt.Errorf("%q: protocol must be tcp or udp", clip(s))
	}
	ap, err := parseAddrPort(hp)
	if err != nil {
		return Service{}, err
	}
	return Service{Addr: ap, Proto: proto}, nil
}

// parseAddrPort parses an address literal with a port in 1–65535.
func parseAddrPort(s string) (netip.AddrPort, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: the host must be an IP address (a rule cannot follow a DNS name)", clip(s))
	}
	if err := checkAddr(a); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %w", clip(s), err)
	}
	return netip.AddrPortFrom(a.Unmap(), port), nil
}

func checkAddr(a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return errors.New("the unspecified address is not a host")
	case a.Is4In6():
		return errors.New("write IPv4 addresses in IPv4 form")
	case a.IsMulticast():
		return errors.New("a multicast address is not a host")
	}
	return nil
}

// ParseTarget parses a canary: "HOST:PORT" (tcp), "HOST:PORT/udp" or
// "HOST/icmp", where HOST is an IP address ("[ADDR]" for IPv6 before a
// port) or a DNS name.
func ParseTarget(s string) (Target, error) {
	if len(s) > maxTargetLen {
		return Target{}, fmt.Errorf("%q is longer than %d bytes", clip(s), maxTargetLen)
	}
	hp, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	var host string
	var port uint16
	switch proto {
	case "tcp", "udp":
		var err error
		if host, port, err = splitHostPort(hp); err != nil {
			return Target{}, err
		}
	case "icmp":
		host = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]")
		if host == "" {
			return Target{}, fmt.Errorf("%q: the host is missing", clip(s))
		}
	default:
		return Target{}, fmt.Errorf("%q: the protocol must be tcp (HOST:PORT), udp (HOST:PORT/udp) or icmp (HOST/icmp)", clip(s))
	}
	t, err := parseTargetHost(s, host, port)
	t.Proto = proto
	return t, err
}

func parseTargetHost(s, host string, port uint16) (Target, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return Target{}, fmt.Errorf("%q: addresses with a zone are not allowed", clip(s))
		}
		if err := checkAddr(a); err != nil {
			return Target{}, fmt.Errorf("%q: %w", clip(s), err)
		}
		if a.IsLoopback() {
			return Target{}, fmt.Errorf("%q: a loopback canary proves nothing about other tiers", clip(s))
		}
		return Target{Host: a.String(), Port: port, Addr: a}, nil
	}
	name, err := ParseDNSName(host)
	if err != nil {
		return Target{}, fmt.Errorf("%q: %w", clip(s), err)
	}
	return Target{Host: name, Port: port}, nil
}

func splitHostPort(s string) (string, uint16, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q: want HOST:PORT", clip(s))
	}
	host, ps := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
		if !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("%q: brackets are for IPv6 addresses", clip(s))
		}
	} else if strings.Contains(host, ":") {
		return "", 0, fmt.Errorf("%q: write IPv6 addresses as [ADDR]:PORT", clip(s))
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: the host is missing", clip(s))
	}
	if ps == "" || len(ps) > 5 || strings.TrimLeft(ps, "0123456789") != "" {
		return "", 0, fmt.Errorf("%q: the port must be a number from 1 to 65535", clip(s))
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: the port must be a number from 1 to 65535", clip(s))
	}
	return host, uint16(p), nil
}

// ParseDNSName checks a DNS name (letters, digits, '-' and '_', at least two
// labels, at most 253 bytes) and returns it lower-case without the trailing
// dot.
func ParseDNSName(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("%q is not a DNS name (1 to 253 bytes)", clip(s))
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("%q: use a fully qualified name (e.g. www.example.jp)", clip(s))
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q: each label must be 1 to 63 bytes", clip(s))
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("%q: a label may not start or end with '-'", clip(s))
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return "", fmt.Errorf("%q: byte %#02x is not allowed in a DNS name", clip(s), b)
			}
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%q is an address, not a name", clip(s))
	}
	return strings.ToLower(name), nil
}

// checkInterfacePattern accepts an interface name (≤ 15 bytes, no '/') or a
// shell pattern such as "enp*".
func checkInterfacePattern(s string) error {
	if len(s) > 15 {
		return fmt.Errorf("%q: interface names are at most 15 bytes", clip(s))
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-_.:@*?", b) >= 0) {
			return fmt.Errorf("%q: byte %#02x is not allowed in an interface name or pattern", clip(s), b)
		}
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("%q: bad pattern", clip(s))
	}
	return nil
}

// clip keeps hostile values short and printable in error messages.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
