package isolation

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSettingsValid(t *testing.T) {
	got, err := ParseSettings(map[string]string{
		SettingAllowedNetworks:   "10.20.0.0/16, 192.168.5.0/24\n fd00:1::/48",
		SettingAllowedServices:   "172.16.1.10:443,172.16.1.53:53/udp [fd00:2::1]:8443/tcp",
		SettingServers:           "172.16.9.1:7443",
		SettingCanaries:          "172.31.0.1:443, www.example.jp:80, [2001:db8::1]:443, 172.31.0.53:53/udp, 172.31.0.1/icmp, 2001:db8::1/icmp, gw.lgwan.example/icmp",
		SettingForbiddenDNSName:  "WWW.Example.JP.",
		SettingAllowedInterfaces: "lo,eth0, enp*",
		SettingNoNewInterfaces:   "true",
		SettingConnectTimeout:    "750ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.168.5.0/24"), netip.MustParsePrefix("fd00:1::/48")},
		AllowedServices: []Service{
			{netip.MustParseAddrPort("172.16.1.10:443"), "tcp"},
			{netip.MustParseAddrPort("172.16.1.53:53"), "udp"},
			{netip.MustParseAddrPort("[fd00:2::1]:8443"), "tcp"},
		},
		Servers: []netip.AddrPort{netip.MustParseAddrPort("172.16.9.1:7443")},
		Canaries: []Target{
			{Host: "172.31.0.1", Port: 443, Proto: "tcp", Addr: netip.MustParseAddr("172.31.0.1")},
			{Host: "www.example.jp", Port: 80, Proto: "tcp"},
			{Host: "2001:db8::1", Port: 443, Proto: "tcp", Addr: netip.MustParseAddr("2001:db8::1")},
			{Host: "172.31.0.53", Port: 53, Proto: "udp", Addr: netip.MustParseAddr("172.31.0.53")},
			{Host: "172.31.0.1", Proto: "icmp", Addr: netip.MustParseAddr("172.31.0.1")},
			{Host: "2001:db8::1", Proto: "icmp", Addr: netip.MustParseAddr("2001:db8::1")},
			{Host: "gw.lgwan.example", Proto: "icmp"},
		},
		ForbiddenDNSName:  "www.example.jp",
		AllowedInterfaces: []string{"lo", "eth0", "enp*"},
		NoNewInterfaces:   true,
		ConnectTimeout:    750 * time.Millisecond,
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	var strs []string
	for _, c := range got.Canaries {
		strs = append(strs, c.String())
	}
	if d := cmp.Diff([]string{"172.31.0.1:443", "www.example.jp:80", "[2001:db8::1]:443", "172.31.0.53:53/udp", "172.31.0.1/icmp", "2001:db8::1/icmp", "gw.lgwan.example/icmp"}, strs); d != "" {
		t.Errorf("canary strings (-want +got)\n%s", d)
	}
}

func TestParseSettingsDefaults(t *testing.T) {
	s, err := ParseSettings(nil)
	if err != nil || s.ConnectTimeout != DefaultConnectTimeout || len(s.Canaries) != 0 {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

// Hostile and mistaken values are refused with an error that says why.
func TestParseSettingsRefused(t *testing.T) {
	many := func(n int, f func(i int) string) string {
		var s []string
		for i := range n {
			s = append(s, f(i))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"unknown key", map[string]string{"canary": "1.2.3.4:80"}, `unknown setting "canary"`},
		{"everything v4", map[string]string{SettingAllowedNetworks: "0.0.0.0/0"}, "would allow every address"},
		{"everything v6", map[string]string{SettingAllowedNetworks: "::/0"}, "would allow every address"},
		{"too broad", map[string]string{SettingAllowedNetworks: "0.0.0.0/1"}, "broader than /8"},
		{"too broad v6", map[string]string{SettingAllowedNetworks: "2000::/3"}, "broader than"},
		{"host bits", map[string]string{SettingAllowedNetworks: "10.1.2.3/16"}, "write 10.1.0.0/16"},
		{"bad cidr", map[string]string{SettingAllowedNetworks: "10.1.2.0/33"}, "not a network in CIDR form"},
		{"no prefix", map[string]string{SettingAllowedNetworks: "10.1.2.0"}, "not a network in CIDR form"},
		{"mapped", map[string]string{SettingAllowedNetworks: "::ffff:10.0.0.0/104"}, "IPv4 form"},
		{"too many networks", map[string]string{SettingAllowedNetworks: many(65, func(i int) string { return "10." + itoa(i) + ".0.0/16" })}, "65 entries; at most 64"},
		{"duplicate", map[string]string{SettingAllowedNetworks: "10.1.0.0/16,10.1.0.0/16"}, "listed twice"},
		{"port zero", map[string]string{SettingAllowedServices: "10.1.1.1:0"}, "port must be a number from 1 to 65535"},
		{"port too big", map[string]string{SettingAllowedServices: "10.1.1.1:70000"}, "port must be"},
		{"port sign", map[string]string{SettingAllowedServices: "10.1.1.1:+80"}, "port must be"},
		{"port missing", map[string]string{SettingServers: "10.1.1.1"}, "want HOST:PORT"},
		{"service by name", map[string]string{SettingAllowedServices: "files.example.jp:445"}, "must be an IP address"},
		{"service proto", map[string]string{SettingAllowedServices: "10.1.1.1:53/icmp"}, "tcp or udp"},
		{"unspecified", map[string]string{SettingServers: "0.0.0.0:443"}, "unspecified"},
		{"v6 no brackets", map[string]string{SettingServers: "fd00::1:443"}, "[ADDR]:PORT"},
		{"zone", map[string]string{SettingServers: "[fe80::1%eth0]:443"}, "must be an IP address"},
		{"nul byte", map[string]string{SettingCanaries: "10.9.9.9:80\x00"}, "byte 0x00"},
		{"escape", map[string]string{SettingForbiddenDNSName: "www.\x1b[31mexample.jp"}, "byte 0x1b"},
		{"non-ascii", map[string]string{SettingCanaries: "例え.jp:80"}, "only printable ASCII"},
		{"too many canaries", map[string]string{SettingCanaries: many(17, func(i int) string { return "172.31.0." + itoa(i+1) + ":80" })}, "at most 16"},
		{"canary inside allowed", map[string]string{SettingAllowedNetworks: "10.1.0.0/16", SettingCanaries: "10.1.2.3:80"}, "lies inside allowed network"},
		{"canary is server", map[string]string{SettingServers: "172.16.0.1:443", SettingCanaries: "172.16.0.1:443"}, "also a server"},
		{"canary loopback", map[string]string{SettingCanaries: "127.0.0.1:80"}, "loopback"},
		{"canary protocol", map[string]string{SettingCanaries: "172.31.0.1:80/sctp"}, "protocol must be tcp"},
		{"icmp canary inside allowed", map[string]string{SettingAllowedNetworks: "10.1.0.0/16", SettingCanaries: "10.1.2.3/icmp"}, "lies inside allowed network"},
		{"udp canary is a service", map[string]string{SettingAllowedServices: "172.16.0.53:53/udp", SettingCanaries: "172.16.0.53:53/udp"}, "also an allowed service"},
		{"icmp canary without host", map[string]string{SettingCanaries: "/icmp"}, "host is missing"},
		{"icmp canary with port", map[string]string{SettingCanaries: "172.31.0.1:80/icmp"}, "not allowed in a DNS name"},
		{"canary long", map[string]string{SettingCanaries: strings.Repeat("a", 250) + ".jp:80"}, "longer than 200"},
		{"dns single label", map[string]string{SettingForbiddenDNSName: "localhost"}, "fully qualified"},
		{"dns empty label", map[string]string{SettingForbiddenDNSName: "a..jp"}, "1 to 63"},
		{"dns long label", map[string]string{SettingForbiddenDNSName: strings.Repeat("a", 64) + ".jp"}, "1 to 63"},
		{"dns hyphen", map[string]string{SettingForbiddenDNSName: "-a.jp"}, "start or end"},
		{"dns address", map[string]string{SettingForbiddenDNSName: "10.1.1.1"}, "an address"},
		{"dns space", map[string]string{SettingForbiddenDNSName: "a b.jp"}, "byte 0x20"},
		{"timeout big", map[string]string{SettingConnectTimeout: "1h"}, "between 100ms and 3s"},
		{"timeout junk", map[string]string{SettingConnectTimeout: "soon"}, "between"},
		{"bool", map[string]string{SettingNoNewInterfaces: "yes"}, `"true" or "false"`},
		{"iface long", map[string]string{SettingAllowedInterfaces: "averyveryverylongname"}, "at most 15"},
		{"iface slash", map[string]string{SettingAllowedInterfaces: "eth/0"}, "not allowed"},
		{"iface pattern", map[string]string{SettingAllowedInterfaces: "eth["}, "not allowed"},
		{"huge value", map[string]string{SettingCanaries: strings.Repeat("x", 4096)}, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSettings(tt.settings)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want it to contain %q", err, tt.want)
			}
			if err != nil && len(err.Error()) > 2000 {
				t.Errorf("error message is %d bytes", len(err.Error()))
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDesiredRules(t *testing.T) {
	s, err := ParseSettings(map[string]string{
		SettingAllowedNetworks: "10.20.0.0/16",
		SettingAllowedServices: "172.16.1.53:53/udp",
		SettingServers:         "172.16.9.1:7443",
	})
	if err != nil {
		t.Fatal(err)
	}
	rules := DesiredRules(s, []netip.AddrPort{netip.MustParseAddrPort("172.16.9.1:7443"), netip.MustParseAddrPort("172.16.9.2:7443")})
	var got []string
	for _, r := range rules {
		got = append(got, r.String())
	}
	want := []string{
		"input: iface lo accept (loopback)",
		"input: established,related accept (replies)",
		"input: icmpv6 nd accept (neighbour discovery)",
		"input: from 10.20.0.0/16 accept (allowed network)",
		"input: counter drop (everything else)",
		"forward: counter drop (no forwarding)",
		"output: iface lo accept (loopback)",
		"output: established,related accept (replies)",
		"output: icmpv6 nd accept (neighbour discovery)",
		"output: to 10.20.0.0/16 accept (allowed network)",
		"output: to 172.16.9.1/32 tcp port 7443 accept (mamori server)",
		"output: to 172.16.9.2/32 tcp port 7443 accept (mamori server)",
		"output: to 172.16.1.53/32 udp port 53 accept (allowed service)",
		"output: counter drop (everything else)",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

// Canaries by address get a marked bypass (the network proof); forwarding
// allowed limits the forward chain to the tier.
func TestDesiredRulesCanariesForwarding(t *testing.T) {
	s, err := ParseSettings(map[string]string{
		SettingAllowedNetworks: "10.20.0.0/16",
		SettingAllowedServices: "172.16.1.53:53/udp",
		SettingCanaries:        "172.31.0.1:443, www.lgwan.example:80, 172.31.0.53:53/udp, [fd00:31::1]/icmp",
		SettingAllowForwarding: "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range DesiredRules(s, nil) {
		if r.Chain != ChainInput {
			got = append(got, r.String())
		}
	}
	want := []string{
		"forward: established,related accept (replies)",
		"forward: to 10.20.0.0/16 accept (allowed network)",
		"forward: to 172.16.1.53/32 udp port 53 accept (allowed service)",
		"forward: counter drop (everything else)",
		"output: iface lo accept (loopback)",
		"output: established,related accept (replies)",
		"output: icmpv6 nd accept (neighbour discovery)",
		"output: to 10.20.0.0/16 accept (allowed network)",
		"output: to 172.16.1.53/32 udp port 53 accept (allowed service)",
		"output: mark 0x6d616d6f to 172.31.0.1/32 tcp port 443 accept (network proof)",
		"output: mark 0x6d616d6f to 172.31.0.53/32 udp port 53 accept (network proof)",
		"output: mark 0x6d616d6f to fd00:31::1/128 icmp accept (network proof)",
		"output: counter drop (everything else)",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestDiff(t *testing.T) {
	a := Item{Chain: "output", Tag: "chain output", Body: "hook 3 policy 0", Text: "type filter hook output priority 0; policy drop", IsChain: true}
	b := Item{Chain: "output", Tag: "output: lo accept", Body: "meta;cmp;accept"}
	c := Item{Chain: "output", Tag: "output: counter drop", Body: "counter;drop"}
	in := Item{Chain: "input", Tag: "chain input", Body: "x", IsChain: true}
	tests := []struct {
		name      string
		want, got []Item
		diff      []string
	}{
		{"same", []Item{a, b, c}, []Item{a, b, c}, nil},
		{"missing rule", []Item{a, b, c}, []Item{a, c}, []string{`missing rule "output: lo accept"`}},
		{"missing chain", []Item{a, b}, []Item{b}, []string{"missing chain output [type filter hook output priority 0; policy drop]"}},
		{"altered", []Item{a, b, c}, []Item{a, {Chain: b.Chain, Tag: b.Tag, Body: "meta;cmp;drop", Text: `oifname "lo" drop`}, c},
			[]string{`altered rule "output: lo accept", now: oifname "lo" drop`}},
		{"unexpected", []Item{a, c}, []Item{a, {Chain: "output", Body: "verdict accept", Text: "accept"}, c}, []string{"unexpected rule in chain output: accept"}},
		{"copied", []Item{a, c}, []Item{a, c, c}, []string{`2 copies of rule "output: counter drop"`}},
		{"reordered", []Item{a, b, c}, []Item{a, c, b}, []string{"rules reordered in chain output"}},
		{"chains listed in another order", []Item{a, b, in}, []Item{in, a, b}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.diff, Diff(tt.want, tt.got)); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestParseRoutesFixtures(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v4, err := ParseRoutes(read("route.leaky"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range v4 {
		got = append(got, r.String()+map[bool]string{true: "", false: " (not a path)"}[r.Path()])
	}
	want := []string{
		"default via 10.20.1.1 dev eth0",
		"10.20.1.0/24 dev eth0",
		"10.30.0.7/32 via 10.20.1.1 dev eth0",
		"172.16.0.0/12 via 10.20.1.254 dev eth0",
		"192.168.0.0/16 dev * (not a path)", // unreachable route
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("route.leaky (-want +got)\n%s", d)
	}
	v6, err := ParseIPv6Routes(read("ipv6_route.leaky"))
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, r := range v6 {
		if r.Path() {
			got = append(got, r.String())
		}
	}
	want = []string{"fd12:3456::/64 dev eth0", "fe80::/64 dev eth1", "fe80::/64 dev eth0", "default (IPv6) via fd12:3456::1 dev eth0", "ff00::/8 dev eth1", "ff00::/8 dev eth0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ipv6_route.leaky (-want +got)\n%s", d)
	}
	host, err := ParseRoutes(read("route.host"))
	if err != nil || len(host) != 2 || host[0].String() != "default via 192.0.2.1 dev eth0" {
		t.Errorf("route.host: %v %v", host, err)
	}
	if _, err := ParseIPv6Routes(read("ipv6_route.host")); err != nil {
		t.Error(err)
	}
}

func TestParseRoutesBad(t *testing.T) {
	hdr := "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
	for name, in := range map[string]string{
		"no header":     "eth0\t00000000\t0101140A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
		"short":         hdr + "eth0\t00000000\n",
		"bad hex":       hdr + "eth0\tZZ000000\t0101140A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
		"holey mask":    hdr + "eth0\t00000000\t0101140A\t0003\t0\t0\t0\t00FF00FF\t0\t0\t0\n",
		"short address": hdr + "eth0\t0\t0101140A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
	} {
		if _, err := ParseRoutes([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for name, in := range map[string]string{
		"fields":  "fe80000000000000 40\n",
		"plen":    "fe800000000000000000000000000000 81 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n",
		"hex":     "fe80000000000000000000000000000g 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n",
		"metric":  "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 1000000000 00000001 00000000 00000001 eth0\n",
		"nexthop": "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 0000 00000100 00000001 00000000 00000001 eth0\n",
	} {
		if _, err := ParseIPv6Routes([]byte(in)); err == nil {
			t.Errorf("ipv6 %s: no error", name)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	got, err := ParseResolvConf([]byte("# comment\nsearch example.jp\nnameserver 10.0.0.53\nnameserver  fd00::53 \noptions ndots:2\nnameserver 10.0.0.54\nnameserver 10.0.0.55\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53"), netip.MustParseAddrPort("[fd00::53]:53"), netip.MustParseAddrPort("10.0.0.54:53")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	if _, err := ParseResolvConf([]byte("nameserver dns.example.jp\n")); err == nil {
		t.Error("a name as nameserver: no error")
	}
}

func TestSessionAllowed(t *testing.T) {
	s, err := ParseSettings(map[string]string{
		SettingAllowedNetworks: "10.20.0.0/16",
		SettingAllowedServices: "172.16.1.53:53/udp",
		SettingServers:         "172.16.9.1:7443",
	})
	if err != nil {
		t.Fatal(err)
	}
	fwd := s
	fwd.AllowForwarding = true
	agent := []netip.AddrPort{netip.MustParseAddrPort("172.16.9.2:7443")}
	local := []netip.Addr{netip.MustParseAddr("10.20.1.5"), netip.MustParseAddr("192.168.122.1")}
	x := func(proto uint8, src, dst string) Session {
		return Session{Proto: proto, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
	}
	for _, tc := range []struct {
		name string
		s    Settings
		x    Session
		want bool
	}{
		{"loopback", s, x(6, "127.0.0.1:4000", "127.0.0.1:80"), true},
		{"out to the tier", s, x(6, "10.20.1.5:4000", "10.20.7.7:445"), true},
		{"out to another tier", s, x(6, "10.20.1.5:4000", "172.31.0.1:443"), false},
		{"out to the agent's server", s, x(6, "10.20.1.5:4000", "172.16.9.2:7443"), true},
		{"out to a server of the policy", s, x(6, "10.20.1.5:4000", "172.16.9.1:7443"), true},
		{"server host, other port", s, x(6, "10.20.1.5:4000", "172.16.9.1:22"), false},
		{"allowed service, udp", s, x(17, "10.20.1.5:4000", "172.16.1.53:53"), true},
		{"allowed service, wrong protocol", s, x(6, "10.20.1.5:4000", "172.16.1.53:53"), false},
		{"icmp out to another tier", s, x(1, "10.20.1.5:0", "172.31.0.1:0"), false},
		{"in from the tier", s, x(6, "10.20.3.3:5000", "10.20.1.5:22"), true},
		{"in from another tier", s, x(6, "172.31.0.9:5000", "10.20.1.5:22"), false},
		{"between own addresses", s, x(6, "10.20.1.5:5000", "192.168.122.1:22"), true},
		{"forwarded, not allowed", s, x(6, "192.168.122.50:5000", "10.20.7.7:445"), false},
		{"forwarded to the tier, allowed", fwd, x(6, "192.168.122.50:5000", "10.20.7.7:445"), true},
		{"forwarded to another tier, allowed forwarding", fwd, x(6, "192.168.122.50:5000", "172.31.0.1:443"), false},
		{"forwarded to a service", fwd, x(17, "192.168.122.50:5000", "172.16.1.53:53"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SessionAllowed(tc.s, agent, local, tc.x); got != tc.want {
				t.Errorf("SessionAllowed(%s) = %v, want %v", tc.x, got, tc.want)
			}
		})
	}
}
