package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// testDeviceList: the device list (端末一覧) filters by derived state,
// group (and no group), failing control, OS and agent version; sorts; pages
// with a total; its facets name what the fleet has; a bad page is refused.
func testDeviceList(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	a := f.enroll("m-a", "zeimu-pc-01", t0).Device
	b := f.enroll("m-b", "shimin-pc-02", t0).Device
	c := f.enroll("m-c", "shimin-pc-03", t0).Device
	n := f.enroll("m-n", "never-pc", t0).Device // never reported
	// c runs another OS and agent: its report carries facts.
	f.ingestOK(
		report(a, t0.Add(time.Minute), store.VerdictNoncompliant, []*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_FAILED, "x")}),
		report(b, t0.Add(2*time.Minute), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")}),
	)
	rc := report(c, t0.Add(-time.Hour), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")})
	rc.Facts = &mamoriv1.DeviceFacts{Hostname: "shimin-pc-03", Os: "windows", AgentVersion: "1.1.0", MachineId: "m-c"}
	f.ingestOK(rc)
	for id, g := range map[string]string{a.ID: "税務課", b.ID: "市民課", c.ID: "市民課"} {
		if _, err := st.SetDeviceGroup(ctx, id, g); err != nil {
			t.Fatal(err)
		}
	}
	judge := func(store.WatchBatch) ([]store.SearchTerm, []store.Signal, error) { return nil, nil, nil }
	for i := 0; ; i++ {
		res, err := st.Watch(ctx, store.WatchParams{Now: t0.Add(5 * time.Minute), Limit: 100, Margin: time.Minute}, judge)
		must(t, err)
		if !res.More {
			break
		}
	}
	cut := store.DeviceFilter{OfflineBefore: t0} // c is offline
	ids := func(q store.DeviceQuery) ([]string, int64) {
		t.Helper()
		ds, total, err := st.ListDevicePage(ctx, q)
		must(t, err)
		var out []string
		for _, d := range ds {
			out = append(out, d.Facts.GetHostname())
		}
		return out, total
	}
	nc := cut
	nc.Compliance = mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT
	off := cut
	off.Compliance = mamoriv1.Compliance_COMPLIANCE_OFFLINE
	grp := cut
	grp.Group = "市民課"
	tests := []struct {
		name  string
		q     store.DeviceQuery
		want  []string
		total int64
	}{
		{"all by host name", store.DeviceQuery{Filter: cut}, []string{"never-pc", "shimin-pc-02", "shimin-pc-03", "zeimu-pc-01"}, 4},
		{"descending", store.DeviceQuery{Filter: cut, Desc: true}, []string{"zeimu-pc-01", "shimin-pc-03", "shimin-pc-02", "never-pc"}, 4},
		{"a page", store.DeviceQuery{Filter: cut, Limit: 2, Offset: 1}, []string{"shimin-pc-02", "shimin-pc-03"}, 4},
		{"past the end", store.DeviceQuery{Filter: cut, Limit: 2, Offset: 10}, nil, 4},
		{"non-compliant", store.DeviceQuery{Filter: nc}, []string{"zeimu-pc-01"}, 1},
		{"offline", store.DeviceQuery{Filter: off}, []string{"shimin-pc-03"}, 1},
		{"group", store.DeviceQuery{Filter: grp}, []string{"shimin-pc-02", "shimin-pc-03"}, 2},
		{"no group", store.DeviceQuery{Filter: cut, NoGroup: true}, []string{"never-pc"}, 1},
		{"failing control", store.DeviceQuery{Filter: cut, Control: "media"}, []string{"zeimu-pc-01"}, 1},
		{"os", store.DeviceQuery{Filter: cut, OS: "windows"}, []string{"shimin-pc-03"}, 1},
		{"agent version", store.DeviceQuery{Filter: cut, AgentVersion: "1.0.0"}, []string{"never-pc", "shimin-pc-02", "zeimu-pc-01"}, 3},
		{"last report, never first", store.DeviceQuery{Filter: cut, Sort: store.SortLastSeen}, []string{"never-pc", "shimin-pc-03", "zeimu-pc-01", "shimin-pc-02"}, 4},
		{"last report, newest first", store.DeviceQuery{Filter: cut, Sort: store.SortLastSeen, Desc: true}, []string{"shimin-pc-02", "zeimu-pc-01", "shimin-pc-03", "never-pc"}, 4},
		{"group then host", store.DeviceQuery{Filter: cut, Sort: store.SortGroup}, []string{"never-pc", "shimin-pc-02", "shimin-pc-03", "zeimu-pc-01"}, 4},
	}
	for _, tc := range tests {
		got, total := ids(tc.q)
		diff(t, tc.name, tc.want, got)
		if total != tc.total {
			t.Errorf("%s: total %d, want %d", tc.name, total, tc.total)
		}
	}
	_ = n
	// Keyset paging: a page of one after (before) each device walks every
	// order in both directions exactly as the whole list reads, NULL times
	// (never-pc) included, with any filter.
	for _, sort := range []store.DeviceSort{store.SortHostname, store.SortLastSeen, store.SortFailingSince, store.SortGroup} {
		for _, desc := range []bool{false, true} {
			for _, f := range []store.DeviceFilter{cut, grp} {
				whole, total := ids(store.DeviceQuery{Filter: f, Sort: sort, Desc: desc})
				idsOf := func(q store.DeviceQuery) []store.Device {
					ds, tot, err := st.ListDevicePage(ctx, q)
					must(t, err)
					if tot != total {
						t.Errorf("%s desc=%v: total %d with a cursor, %d without", sort, desc, tot, total)
					}
					return ds
				}
				var fwd []string
				q := store.DeviceQuery{Filter: f, Sort: sort, Desc: desc, Limit: 1}
				for range 10 {
					ds := idsOf(q)
					if len(ds) == 0 {
						break
					}
					fwd = append(fwd, ds[0].Facts.GetHostname())
					q.After = ds[0].ID
				}
				diff(t, fmt.Sprintf("%s desc=%v group=%q forwards", sort, desc, f.Group), whole, fwd)
				// Backwards from the end, pages of two.
				all, _, err := st.ListDevicePage(ctx, store.DeviceQuery{Filter: f, Sort: sort, Desc: desc})
				must(t, err)
				var back []string
				q = store.DeviceQuery{Filter: f, Sort: sort, Desc: desc, Limit: 2, Before: all[len(all)-1].ID}
				for range 10 {
					ds := idsOf(q)
					if len(ds) == 0 {
						break
					}
					var page []string
					for _, d := range ds {
						page = append(page, d.Facts.GetHostname())
					}
					back = append(page, back...)
					q.Before = ds[0].ID
				}
				diff(t, fmt.Sprintf("%s desc=%v group=%q backwards", sort, desc, f.Group), whole[:len(whole)-1], back)
			}
		}
	}
	if _, _, err := st.ListDevicePage(ctx, store.DeviceQuery{After: "no-such-device"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after an unknown device: %v, want ErrNotFound", err)
	}
	for name, q := range map[string]store.DeviceQuery{
		"after and before":  {After: a.ID, Before: b.ID},
		"after and offset":  {After: a.ID, Offset: 1},
		"before and offset": {Before: a.ID, Offset: 1},
		"unknown order":     {Sort: "facts"},
		"page too large":    {Limit: 1001},
		"negative offset":   {Offset: -1},
		"group and none":    {Filter: grp, NoGroup: true},
		"unknown state":     {Filter: store.DeviceFilter{Compliance: 99}},
	} {
		if _, _, err := st.ListDevicePage(ctx, q); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	fc, err := st.DeviceFacets(ctx)
	must(t, err)
	diff(t, "facets", store.DeviceFacets{Groups: []string{"市民課", "税務課"}, OSes: []string{"linux", "windows"},
		AgentVersions: []string{"1.0.0", "1.1.0"}, Controls: []string{"media"}}, fc)
}
