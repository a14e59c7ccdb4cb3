package isolation

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func FuzzParseSettings(f *testing.F) {
	f.Add("10.20.0.0/16", "10.20.1.53:53/udp", "172.16.9.1:7443", "172.31.0.1:443,www.example.jp:80", "www.example.jp", "lo,eth*", "2s")
	f.Add("0.0.0.0/0", "[::1]:0", "fd00::1:443", "127.0.0.1:80", "-a..jp", "eth[", "1h")
	f.Add("10.1.2.3/8\x00", "a:b:c", "", "10.1.0.1:80", "", "", "")
	f.Fuzz(func(t *testing.T, nets, svcs, servers, canaries, dns, ifcs, timeout string) {
		s, err := ParseSettings(map[string]string{
			SettingAllowedNetworks: nets, SettingAllowedServices: svcs, SettingServers: servers,
			SettingCanaries: canaries, SettingForbiddenDNSName: dns, SettingAllowedInterfaces: ifcs, SettingConnectTimeout: timeout,
		})
		if err != nil {
			if len(err.Error()) > 64*1024 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			return
		}
		for _, p := range s.AllowedNetworks {
			if p.Bits() == 0 || p.Masked() != p || p.Addr().Is4() && p.Bits() < minIPv4Bits || p.Addr().Is6() && p.Bits() < minIPv6Bits {
				t.Errorf("accepted network %v", p)
			}
			for _, c := range s.Canaries {
				if c.Addr.IsValid() && p.Contains(c.Addr) {
					t.Errorf("canary %v inside allowed %v", c, p)
				}
			}
		}
		for _, sv := range s.AllowedServices {
			if sv.Addr.Port() == 0 || !sv.Addr.Addr().IsValid() || sv.Addr.Addr().IsUnspecified() {
				t.Errorf("accepted service %v", sv)
			}
		}
		for _, c := range s.Canaries {
			if c.Port == 0 || len(c.String()) > maxTargetLen+2 || strings.ContainsAny(c.Host, " \x00\n/") {
				t.Errorf("accepted canary %q", c)
			}
		}
		if s.ConnectTimeout < MinConnectTimeout || s.ConnectTimeout > MaxConnectTimeout {
			t.Errorf("timeout %v", s.ConnectTimeout)
		}
		for _, r := range DesiredRules(s, nil) {
			if r.Net.IsValid() && r.Net.Bits() == 0 {
				t.Errorf("rule allows everything: %v", r)
			}
		}
	})
}

func fuzzFixtures(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseRoutes(f *testing.F) {
	fuzzFixtures(f, "route.host", "route.leaky")
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRoutes(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.Dst.IsValid() || r.Dst.Masked() != r.Dst || !r.Dst.Addr().Is4() {
				t.Errorf("route %+v", r)
			}
			_ = r.String()
		}
	})
}

func FuzzParseIPv6Routes(f *testing.F) {
	fuzzFixtures(f, "ipv6_route.host", "ipv6_route.leaky")
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseIPv6Routes(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.Dst.IsValid() || r.Dst.Masked() != r.Dst || !r.Dst.Addr().Is6() {
				t.Errorf("route %+v", r)
			}
			_ = r.String()
		}
	})
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.53\nnameserver fd00::53\nsearch example.jp\n"))
	f.Add([]byte("nameserver\nnameserver x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ns, err := ParseResolvConf(b)
		if err != nil {
			return
		}
		if len(ns) > maxNameservers {
			t.Errorf("%d nameservers", len(ns))
		}
		for _, n := range ns {
			if !n.IsValid() || n.Port() != 53 {
				t.Errorf("nameserver %v", n)
			}
		}
	})
}

func FuzzParseDNSAnswer(f *testing.F) {
	q, _ := dnsQuery(7, "www.example.jp", 1)
	f.Add(q)
	r := append([]byte(nil), q...)
	r[2] |= 0x80
	f.Add(r)
	f.Fuzz(func(t *testing.T, b []byte) {
		addrs, err := ParseDNSAnswer(b, 7)
		if err != nil {
			return
		}
		if len(addrs) > 64 {
			t.Errorf("%d addresses", len(addrs))
		}
		for _, a := range addrs {
			if a == (netip.Addr{}) {
				t.Error("zero address")
			}
		}
	})
}
