package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// testAuditPage: the audit log a page at a time (ListAuditPage): filters
// by actor, action (and the actions under it), device (as actor or named
// in the target) and time; keyset paging in both directions walks every
// matching record once; hostile filter values match only themselves; bad
// pages are refused.
func testAuditPage(t *testing.T, st store.Store) {
	ctx := t.Context()
	recs := []store.AuditRecord{
		{Actor: "op-1", Action: "console.login", Target: "op-1"},
		{Actor: "op-2", Action: "device.revoke", Target: "dev-1", Detail: "紛失"},
		{Actor: "device:dev-2", Action: "device.enroll", Target: "dev-2"},
		{Actor: "anonymous", Action: "console.denied", Target: "POST /devices/dev-1/revoke"},
		{Actor: "op-1", Action: "consoles", Target: "x"},
		{Actor: "system", Action: "compliance.change", Target: "dev-10", Detail: "NONCOMPLIANT"},
		{Actor: "op-2", Action: "policy.set", Target: "v2"},
		{Actor: "op-1", Action: "console.denied", Target: "50%_off'; DROP TABLE audit; --"},
		{Actor: "op-3", Action: "console.logout", Target: "op-3"},
	}
	for i := range recs {
		recs[i].At = t0.Add(time.Duration(i) * time.Hour)
		r, err := st.AppendAudit(ctx, recs[i])
		must(t, err)
		recs[i] = r
	}
	seqs := func(rs []store.AuditRecord) []int64 {
		var out []int64
		for _, r := range rs {
			out = append(out, r.Seq)
		}
		return out
	}
	tests := []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"all, oldest first", store.AuditQuery{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"all, newest first", store.AuditQuery{Desc: true}, []int64{9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"after 3", store.AuditQuery{Cursor: 3}, []int64{4, 5, 6, 7, 8, 9}},
		{"before 3, newest first", store.AuditQuery{Cursor: 3, Desc: true}, []int64{2, 1}},
		{"actor", store.AuditQuery{Actors: []string{"op-1"}}, []int64{1, 5, 8}},
		{"two actors", store.AuditQuery{Actors: []string{"op-2", "system"}, Desc: true}, []int64{7, 6, 2}},
		{"no actor", store.AuditQuery{Actors: []string{}}, nil},
		{"action and under it", store.AuditQuery{Action: "console"}, []int64{1, 4, 8, 9}},
		{"exact action", store.AuditQuery{Action: "console.denied"}, []int64{4, 8}},
		{"action prefix is not a word prefix", store.AuditQuery{Action: "consol"}, nil},
		{"device as actor or target", store.AuditQuery{Devices: []string{"dev-2"}}, []int64{3}},
		{"device in target", store.AuditQuery{Devices: []string{"dev-1"}}, []int64{2, 4, 6}},
		{"device actor and action", store.AuditQuery{Devices: []string{"dev-1"}, Action: "console"}, []int64{4}},
		{"time range", store.AuditQuery{From: t0.Add(2 * time.Hour), To: t0.Add(5 * time.Hour)}, []int64{3, 4, 5}},
		{"from only", store.AuditQuery{From: t0.Add(7*time.Hour + time.Second)}, []int64{9}},
		{"actor and time, newest first", store.AuditQuery{Actors: []string{"op-1"}, To: t0.Add(7 * time.Hour), Desc: true}, []int64{5, 1}},
		{"LIKE wildcards are text", store.AuditQuery{Devices: []string{"%"}}, []int64{8}},
		{"underscore is text", store.AuditQuery{Devices: []string{"0_o"}}, nil},
		{"quotes are text", store.AuditQuery{Devices: []string{"'; DROP TABLE audit; --"}}, []int64{8}},
		{"case-sensitive", store.AuditQuery{Devices: []string{"DEV-1"}}, nil},
		{"actor quote", store.AuditQuery{Actors: []string{"op-1' OR '1'='1"}}, nil},
	}
	for _, tc := range tests {
		tc.q.Limit = 100
		rs, err := st.ListAuditPage(ctx, tc.q)
		must(t, err)
		diff(t, tc.name, tc.want, seqs(rs))
	}
	// The records come back whole, as appended.
	rs, err := st.ListAuditPage(ctx, store.AuditQuery{Limit: 100})
	must(t, err)
	diff(t, "records", recs, rs)

	// Keyset paging walks every match once, both ways, with pages of 2.
	for _, desc := range []bool{false, true} {
		var got []int64
		q := store.AuditQuery{Action: "console", Desc: desc, Limit: 2}
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatal("paging does not end")
			}
			rs, err := st.ListAuditPage(ctx, q)
			must(t, err)
			got = append(got, seqs(rs)...)
			if len(rs) < q.Limit {
				break
			}
			q.Cursor = rs[len(rs)-1].Seq
		}
		want := []int64{1, 4, 8, 9}
		if desc {
			want = []int64{9, 8, 4, 1}
		}
		diff(t, fmt.Sprint("paged, desc=", desc), want, got)
	}

	many := make([]string, store.MaxAuditFilterValues+1)
	for i := range many {
		many[i] = fmt.Sprint("op-", i)
	}
	for name, q := range map[string]store.AuditQuery{
		"no limit":          {},
		"page too large":    {Limit: store.MaxAuditPage + 1},
		"negative cursor":   {Limit: 1, Cursor: -1},
		"too many actors":   {Limit: 1, Actors: many},
		"too many devices":  {Limit: 1, Devices: many},
		"a huge action":     {Limit: 1, Action: strings.Repeat("a", 1<<20)},
		"an invalid string": {Limit: 1, Action: "\xff"},
		"a NUL":             {Limit: 1, Actors: []string{"op-1\x00"}},
		"invalid devices":   {Limit: 1, Devices: []string{"\xff", ""}},
	} {
		rs, err := st.ListAuditPage(ctx, q)
		if name == "a huge action" || name == "an invalid string" || name == "a NUL" || name == "invalid devices" {
			// Odd text is a filter that matches nothing, not an error.
			if err != nil || len(rs) != 0 {
				t.Errorf("%s: %v, %d records", name, err, len(rs))
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The maximum number of values is accepted.
	_, err = st.ListAuditPage(ctx, store.AuditQuery{Limit: 1, Actors: many[:store.MaxAuditFilterValues], Devices: many[:store.MaxAuditFilterValues]})
	must(t, err)
}
