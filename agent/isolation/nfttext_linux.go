//go:build linux

package isolation

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftText renders a rule's expressions the way `nft list ruleset` would
// show them, for a person reading a drift report: `oifname "lo" accept`,
// `ip daddr 10.20.0.0/16 accept`, `ct state established,related accept`.
// It knows the expressions mamori writes and the common ones a person adds
// by hand; anything else is named by its kind (`<lookup>`), never dumped
// as a Go struct.
func nftText(es []expr.Any) string {
	var out []string
	var fam byte // from meta nfproto: which header a payload load reads
	var l4 byte  // from meta l4proto: which transport header
	for i := 0; i < len(es); i++ {
		next := func() expr.Any {
			if i+1 < len(es) {
				return es[i+1]
			}
			return nil
		}
		switch e := es[i].(type) {
		case *expr.Meta:
			cmp, ok := next().(*expr.Cmp)
			if !ok {
				out = append(out, "meta "+metaName(e.Key))
				continue
			}
			i++
			switch e.Key {
			case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
				out = append(out, metaName(e.Key)+" "+cmpOp(cmp.Op)+strconv.Quote(strings.TrimRight(string(cmp.Data), "\x00")))
			case expr.MetaKeyNFPROTO:
				if len(cmp.Data) == 1 {
					fam = cmp.Data[0]
				}
				// nft folds this into the ip/ip6 of the next match.
				if p, ok := next().(*expr.Payload); !ok || p.Base != expr.PayloadBaseNetworkHeader {
					out = append(out, "meta nfproto "+cmpOp(cmp.Op)+famName(fam))
				}
			case expr.MetaKeyMARK:
				if len(cmp.Data) == 4 {
					out = append(out, fmt.Sprintf("meta mark %s0x%08x", cmpOp(cmp.Op), binaryutil.NativeEndian.Uint32(cmp.Data)))
					continue
				}
				out = append(out, "meta mark "+cmpOp(cmp.Op)+"0x"+fmt.Sprintf("%x", cmp.Data))
			case expr.MetaKeyL4PROTO:
				name := "?"
				if len(cmp.Data) == 1 {
					l4 = cmp.Data[0]
					name = protoName(cmp.Data[0])
					if strings.HasPrefix(name, "proto ") {
						name = strings.TrimPrefix(name, "proto ")
					}
				}
				out = append(out, "meta l4proto "+cmpOp(cmp.Op)+name)
			default:
				out = append(out, "meta "+metaName(e.Key)+" "+cmpOp(cmp.Op)+"0x"+fmt.Sprintf("%x", cmp.Data))
			}
		case *expr.Payload:
			field, val, n := payloadText(e, fam, l4, es[i+1:])
			i += n
			out = append(out, field+" "+val)
		case *expr.Ct:
			if e.Key == expr.CtKeySTATE {
				bw, ok1 := next().(*expr.Bitwise)
				if ok1 && i+2 < len(es) {
					if cmp, ok2 := es[i+2].(*expr.Cmp); ok2 && len(bw.Mask) == 4 {
						i += 2
						op := "" // "ct state established,related": mask != 0
						if cmp.Op == expr.CmpOpEq {
							op = "!= "
						}
						out = append(out, "ct state "+op+ctStates(binaryutil.NativeEndian.Uint32(bw.Mask)))
						continue
					}
				}
			}
			out = append(out, fmt.Sprintf("ct <key %d>", e.Key))
		case *expr.Counter:
			out = append(out, "counter")
		case *expr.Verdict:
			out = append(out, verdictText(e))
		case *expr.Masq:
			out = append(out, "masquerade")
		case *expr.Log:
			out = append(out, "log")
		case *expr.Reject:
			out = append(out, "reject")
		case *expr.Cmp:
			out = append(out, cmpOp(e.Op)+"0x"+fmt.Sprintf("%x", e.Data))
		default:
			name := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
			out = append(out, "<"+name+">")
		}
	}
	if len(out) == 0 {
		return "(empty rule)"
	}
	return strings.Join(out, " ")
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyMARK:
		return "mark"
	}
	return "<key " + strconv.Itoa(int(k)) + ">"
}

func famName(f byte) string {
	switch f {
	case unix.NFPROTO_IPV4:
		return "ipv4"
	case unix.NFPROTO_IPV6:
		return "ipv6"
	}
	return strconv.Itoa(int(f))
}

func cmpOp(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return ""
	case expr.CmpOpNeq:
		return "!= "
	case expr.CmpOpLt:
		return "< "
	case expr.CmpOpLte:
		return "<= "
	case expr.CmpOpGt:
		return "> "
	case expr.CmpOpGte:
		return ">= "
	}
	return "? "
}

// payloadText renders a payload load and the match that follows it
// (an optional bitwise mask, then a cmp or a range); n is how many of
// rest it used.
func payloadText(p *expr.Payload, fam, l4 byte, rest []expr.Any) (field, val string, n int) {
	var mask []byte
	if len(rest) > 0 {
		if bw, ok := rest[0].(*expr.Bitwise); ok {
			mask, rest, n = bw.Mask, rest[1:], 1
		}
	}
	var data []byte
	op := ""
	if len(rest) > 0 {
		switch m := rest[0].(type) {
		case *expr.Cmp:
			data, op, n = m.Data, cmpOp(m.Op), n+1
		case *expr.Range:
			n++
			return payloadField(p, fam, l4), cmpOp(m.Op) + rangeText(m.FromData) + "-" + rangeText(m.ToData), n
		}
	}
	field = payloadField(p, fam, l4)
	switch {
	case p.Base == expr.PayloadBaseNetworkHeader && (len(data) == 4 || len(data) == 16):
		a, _ := netip.AddrFromSlice(data)
		bits := a.BitLen()
		if mask != nil {
			bits = 0
			for _, b := range mask {
				for ; b != 0; b <<= 1 {
					bits++
				}
			}
		}
		if bits == a.BitLen() {
			return field, op + a.String(), n
		}
		return field, op + netip.PrefixFrom(a, bits).String(), n
	case len(data) == 2:
		return field, op + strconv.Itoa(int(binary.BigEndian.Uint16(data))), n
	case len(data) == 1:
		return field, op + strconv.Itoa(int(data[0])), n
	}
	return field, op + "0x" + fmt.Sprintf("%x", data), n
}

func rangeText(b []byte) string {
	switch len(b) {
	case 1:
		return strconv.Itoa(int(b[0]))
	case 2:
		return strconv.Itoa(int(binary.BigEndian.Uint16(b)))
	}
	return "0x" + fmt.Sprintf("%x", b)
}

func payloadField(p *expr.Payload, fam, l4 byte) string {
	switch p.Base {
	case expr.PayloadBaseNetworkHeader:
		switch {
		case fam != unix.NFPROTO_IPV6 && p.Offset == 12 && p.Len == 4:
			return "ip saddr"
		case fam != unix.NFPROTO_IPV6 && p.Offset == 16 && p.Len == 4:
			return "ip daddr"
		case p.Offset == 8 && p.Len == 16:
			return "ip6 saddr"
		case p.Offset == 24 && p.Len == 16:
			return "ip6 daddr"
		}
		return fmt.Sprintf("@nh,%d,%d", p.Offset*8, p.Len*8)
	case expr.PayloadBaseTransportHeader:
		switch {
		case p.Offset == 0 && p.Len == 2:
			return "th sport"
		case p.Offset == 2 && p.Len == 2:
			return "th dport"
		case p.Offset == 0 && p.Len == 1 && l4 == unix.IPPROTO_ICMPV6:
			return "icmpv6 type"
		case p.Offset == 0 && p.Len == 1:
			return "icmp type"
		}
		return fmt.Sprintf("@th,%d,%d", p.Offset*8, p.Len*8)
	}
	return fmt.Sprintf("@ll,%d,%d", p.Offset*8, p.Len*8)
}

func ctStates(mask uint32) string {
	var s []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"},
		{expr.CtStateBitRELATED, "related"}, {expr.CtStateBitNEW, "new"}, {expr.CtStateBitUNTRACKED, "untracked"}} {
		if mask&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ",")
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return "verdict " + strconv.Itoa(int(v.Kind))
}
