//go:build linux

package isolation

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
)

// Drift reports name rules as nft would print them, never as Go structs.
func TestNftText(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{Rule{Chain: ChainOutput, Iface: "lo"}, `oifname "lo" accept`},
		{Rule{Chain: ChainInput, Iface: "lo"}, `iifname "lo" accept`},
		{Rule{Chain: ChainOutput, Established: true}, "ct state established,related accept"},
		{Rule{Chain: ChainInput, ICMPv6ND: true, Proto: "icmpv6"}, "meta nfproto ipv6 meta l4proto icmpv6 icmpv6 type 133-136 accept"},
		{Rule{Chain: ChainOutput, Net: p("10.20.0.0/16")}, "ip daddr 10.20.0.0/16 accept"},
		{Rule{Chain: ChainInput, Net: p("10.20.0.0/16")}, "ip saddr 10.20.0.0/16 accept"},
		{Rule{Chain: ChainOutput, Net: p("fd00:20::/32")}, "ip6 daddr fd00:20::/32 accept"},
		{Rule{Chain: ChainOutput, Net: p("172.16.9.1/32"), Proto: "tcp", Port: 7443}, "ip daddr 172.16.9.1 meta l4proto tcp th dport 7443 accept"},
		{Rule{Chain: ChainForward, Drop: true}, "counter drop"},
		{Rule{Chain: ChainOutput, Mark: ProbeMark, Net: p("172.31.0.1/32"), Proto: "tcp", Port: 443}, "meta mark 0x6d616d6f ip daddr 172.31.0.1 meta l4proto tcp th dport 443 accept"},
		{Rule{Chain: ChainOutput, Mark: ProbeMark, Net: p("fd00:31::1/128"), Proto: "icmp"}, "meta mark 0x6d616d6f ip6 daddr fd00:31::1 meta l4proto icmpv6 accept"},
	} {
		if got := nftText(encode(tc.r)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.r, got, tc.want)
		}
	}
	// What a person might insert by hand.
	got := []string{
		nftText([]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}),
		nftText([]expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("eth0")}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "x"}}),
		nftText([]expr.Any{&expr.Lookup{SourceRegister: 1, SetName: "s"}, &expr.Verdict{Kind: expr.VerdictDrop}}),
		nftText(nil),
	}
	want := []string{"accept", `oifname != "eth0" jump x`, "<lookup> drop", "(empty rule)"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}
