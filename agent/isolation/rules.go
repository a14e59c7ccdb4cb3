package isolation

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// TableName is the nftables table (family inet) that mamori owns. mamori
// creates, compares, replaces and deletes this table only; other tables are
// never read for changes nor written.
const TableName = "mamori"

// Chains of the table. All are filter chains with policy drop, so that the
// ruleset fails closed. The forward chain keeps traffic routed through the
// terminal (a VM or container behind it, masqueraded) from reaching what the
// terminal itself may not.
const (
	ChainInput   = "input"
	ChainForward = "forward"
	ChainOutput  = "output"
)

// ProbeMark is the packet mark ("mamo") of the canary probes of the
// network proof: in enforce mode the output chain lets packets with it
// through to the canaries (their protocol and port) and nowhere else, so
// that the probe measures the network, not mamori's own table. Setting a
// mark needs CAP_NET_ADMIN, as deleting the table does.
const ProbeMark uint32 = 0x6d616d6f

// Chains lists the table's chains in the order they are built and shown.
var Chains = []string{ChainInput, ChainForward, ChainOutput}

// Rule is one rule of the desired ruleset, independent of nftables. The
// Linux code turns it into expressions; its String is stored in the rule's
// comment and names it in drift reports.
type Rule struct {
	Chain       string
	Iface       string       // loopback rule: "lo"
	Established bool         // ct state established,related
	Net         netip.Prefix // destination (output, forward) or source (input)
	Proto       string       // "tcp", "udp", "icmpv6" or "" for any
	Port        uint16       // destination port, with tcp/udp
	ICMPv6ND    bool         // ICMPv6 router and neighbour discovery (types 133–136)
	Mark        uint32       // packet mark to match (the network proof's probes); 0: none
	Drop        bool         // counter drop; otherwise accept
	Why         string
}

func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Chain + ":")
	if r.Mark != 0 {
		fmt.Fprintf(&b, " mark 0x%08x", r.Mark)
	}
	switch {
	case r.Iface != "":
		b.WriteString(" iface " + r.Iface)
	case r.Established:
		b.WriteString(" established,related")
	case r.ICMPv6ND:
		b.WriteString(" icmpv6 nd")
	}
	if r.Net.IsValid() {
		if r.Chain == ChainInput {
			b.WriteString(" from ")
		} else {
			b.WriteString(" to ")
		}
		b.WriteString(r.Net.String())
	}
	if r.Proto != "" && !r.ICMPv6ND {
		b.WriteString(" " + r.Proto)
	}
	if r.Port != 0 {
		b.WriteString(" port " + strconv.Itoa(int(r.Port)))
	}
	if r.Drop {
		b.WriteString(" counter drop")
	} else {
		b.WriteString(" accept")
	}
	if r.Why != "" {
		b.WriteString(" (" + r.Why + ")")
	}
	return b.String()
}

// DesiredRules is the ruleset for settings s and the agent's own server
// addresses: loopback, established/related and IPv6 neighbour discovery
// both ways; out to the allowed networks, services and servers; in from the
// allowed networks; everything else counted and dropped. Forwarded traffic
// is dropped, or, with allow_forwarding, let through only towards the
// allowed networks and services (and its replies).
func DesiredRules(s Settings, agentServers []netip.AddrPort) []Rule {
	var rs []Rule
	for _, ch := range Chains {
		if ch == ChainForward {
			if s.AllowForwarding {
				rs = append(rs, Rule{Chain: ch, Established: true, Why: "replies"})
				for _, p := range s.AllowedNetworks {
					rs = append(rs, Rule{Chain: ch, Net: p, Why: "allowed network"})
				}
				for _, sv := range s.AllowedServices {
					rs = append(rs, Rule{Chain: ch, Net: netip.PrefixFrom(sv.Addr.Addr(), sv.Addr.Addr().BitLen()), Proto: sv.Proto, Port: sv.Addr.Port(), Why: "allowed service"})
				}
				rs = append(rs, Rule{Chain: ch, Drop: true, Why: "everything else"})
			} else {
				rs = append(rs, Rule{Chain: ch, Drop: true, Why: "no forwarding"})
			}
			continue
		}
		rs = append(rs,
			Rule{Chain: ch, Iface: "lo", Why: "loopback"},
			Rule{Chain: ch, Established: true, Why: "replies"},
			Rule{Chain: ch, ICMPv6ND: true, Proto: "icmpv6", Why: "neighbour discovery"},
		)
		for _, p := range s.AllowedNetworks {
			rs = append(rs, Rule{Chain: ch, Net: p, Why: "allowed network"})
		}
		if ch == ChainOutput {
			seen := map[string]bool{}
			add := func(ap netip.AddrPort, proto, why string) {
				k := ap.String() + "/" + proto
				if seen[k] {
					return
				}
				seen[k] = true
				rs = append(rs, Rule{Chain: ch, Net: netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()), Proto: proto, Port: ap.Port(), Why: why})
			}
			for _, ap := range agentServers {
				add(ap, "tcp", "mamori server")
			}
			for _, ap := range s.Servers {
				add(ap, "tcp", "mamori server")
			}
			for _, sv := range s.AllowedServices {
				add(sv.Addr, sv.Proto, "allowed service")
			}
			// The network proof: the agent's own canary probes, marked,
			// pass the table so that they show whether the network
			// itself stops them — only to the canaries, only their
			// protocol and port.
			for _, t := range s.Canaries {
				if t.Addr.IsValid() {
					rs = append(rs, Rule{Chain: ch, Mark: ProbeMark, Net: netip.PrefixFrom(t.Addr, t.Addr.BitLen()), Proto: t.Proto, Port: t.Port, Why: "network proof"})
				}
			}
		}
		rs = append(rs, Rule{Chain: ch, Drop: true, Why: "everything else"})
	}
	return rs
}

// Item is one element of a ruleset as compared for drift: a chain or a
// rule, named by Tag (the rule comment or the chain's description) with
// Body the canonical text of what the kernel holds for it, compared, and
// Text the same as `nft list ruleset` would show it, for people.
type Item struct {
	Chain   string
	Tag     string
	Body    string
	Text    string // "" : Body
	IsChain bool
}

func (it Item) text() string {
	if it.Text != "" {
		return it.Text
	}
	return it.Body
}

// CountRules is how many of items are rules (not chains).
func CountRules(items []Item) int {
	n := 0
	for _, it := range items {
		if !it.IsChain {
			n++
		}
	}
	return n
}

// Diff compares the live ruleset with the desired one and describes each
// difference for a person: missing, altered, unexpected or reordered rules
// and chains. Nil means identical.
func Diff(want, got []Item) []string {
	var out []string
	key := func(it Item) string { return it.Chain + "\x00" + it.Tag }
	gotBy := map[string][]Item{}
	for _, it := range got {
		gotBy[key(it)] = append(gotBy[key(it)], it)
	}
	wantBy := map[string]int{}
	for _, it := range want {
		wantBy[key(it)]++
		g := gotBy[key(it)]
		switch {
		case len(g) == 0:
			out = append(out, "missing "+describe(it))
		case !slices.ContainsFunc(g, func(x Item) bool { return x.Body == it.Body }):
			out = append(out, "altered "+describe(it)+", now: "+clip(g[0].text()))
		}
	}
	for _, it := range got {
		if wantBy[key(it)] == 0 {
			out = append(out, "unexpected "+describe(it))
			wantBy[key(it)] = -1 // report once
		} else if n := len(gotBy[key(it)]); n > wantBy[key(it)] && wantBy[key(it)] > 0 {
			out = append(out, fmt.Sprintf("%d copies of %s", n, describe(it)))
			wantBy[key(it)] = -1
		}
	}
	if len(out) == 0 && len(want) == len(got) {
		// Chains may be listed in any order; rules within one may not.
		inChain := func(items []Item, ch string) []string {
			var ks []string
			for _, it := range items {
				if it.Chain == ch {
					ks = append(ks, it.Tag)
				}
			}
			return ks
		}
		for _, it := range want {
			if !slices.Equal(inChain(want, it.Chain), inChain(got, it.Chain)) {
				return []string{"rules reordered in chain " + it.Chain}
			}
		}
	}
	return out
}

func describe(it Item) string {
	if it.IsChain {
		return "chain " + it.Chain + " [" + clip(it.text()) + "]"
	}
	if it.Tag == "" {
		return "rule in chain " + it.Chain + ": " + clip(it.text())
	}
	return "rule " + strconvQuote(it.Tag)
}

func strconvQuote(s string) string { return strconv.Quote(clip(s)) }
