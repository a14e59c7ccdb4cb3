package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/server/audit"
)

// chain builds n intact records.
func chain(n int) []audit.Record {
	var out []audit.Record
	var prev []byte
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		r := audit.Record{Seq: int64(i), At: t0.Add(time.Duration(i) * time.Second), Actor: "op-1",
			Action: "token.create", Target: fmt.Sprint("t", i), Detail: "uses=1", PrevHash: prev}
		r.Hash = audit.Hash(prev, r)
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

type brk struct {
	Seq  int64
	Kind audit.BreakKind
}

func TestVerifier(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func([]audit.Record) []audit.Record
		want    []brk
		problem string
	}{
		{"intact", func(rs []audit.Record) []audit.Record { return rs }, nil, ""},
		{"content changed", func(rs []audit.Record) []audit.Record { rs[2].Detail = "uses=100"; return rs },
			[]brk{{3, audit.Content}}, "seq 3: content changed"},
		{"hash rewritten too: the next link breaks", func(rs []audit.Record) []audit.Record {
			rs[2].Detail = "x"
			rs[2].Hash = audit.Hash(rs[2].PrevHash, rs[2])
			return rs
		}, []brk{{4, audit.Link}}, "seq 4: link to seq 3 broken"},
		{"deleted row", func(rs []audit.Record) []audit.Record { return append(rs[:1], rs[2:]...) },
			[]brk{{3, audit.Gap}, {3, audit.Link}}, "seq 3: records after seq 1 are missing (2 breaks in all)"},
		{"every break is collected, not only the first", func(rs []audit.Record) []audit.Record {
			rs[1].Actor, rs[4].Target = "someone", "other"
			return rs
		}, []brk{{2, audit.Content}, {5, audit.Content}}, "seq 2: content changed (2 breaks in all)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.tamper(chain(6))
			var v audit.Verifier
			for _, r := range rs {
				v.Add(r)
			}
			var got []brk
			for _, b := range v.Breaks() {
				got = append(got, brk{b.Seq, b.Kind})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("breaks (-want +got):\n%s", diff)
			}
			if v.Problem() != tc.problem || v.OK() != (tc.problem == "") {
				t.Errorf("Problem() = %q, OK() = %v; want %q", v.Problem(), v.OK(), tc.problem)
			}
			if seq, head := v.Head(); seq != rs[len(rs)-1].Seq || string(head) != string(rs[len(rs)-1].Hash) || v.Records() != int64(len(rs)) {
				t.Errorf("head %d, %d records", seq, v.Records())
			}
		})
	}
}
