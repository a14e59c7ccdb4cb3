package storetest

import (
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// testGroups: a token's group is given to the devices enrolled with it; a
// re-enrolment with a group-less token keeps the group; counts and the
// list filter split by group; SetDeviceGroup moves a device.
func testGroups(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	kyoiku := []byte("group-token-hash-kyoiku-00000000")
	must(t, st.CreateToken(ctx, store.Token{ID: "tok-kyoiku", Hash: kyoiku, CreatedAt: t0,
		ExpiresAt: t0.Add(time.Hour), Uses: 10, Group: "教育委員会"}))

	a, err := f.enrollErr(kyoiku, "m-a", "a", t0)
	must(t, err)
	if a.Device.Group != "教育委員会" {
		t.Fatalf("device enrolled with a group token: group %q", a.Device.Group)
	}
	b := f.enroll("m-b", "b", t0).Device
	if b.Group != "" {
		t.Errorf("device enrolled with a group-less token: group %q", b.Group)
	}
	// Re-enrolling with a group-less token keeps the group.
	re, err := f.reenroll(a.Device, "m-a", "a", t0.Add(time.Minute))
	must(t, err)
	if re.Device.Group != "教育委員会" || !re.Reenrolled {
		t.Errorf("re-enrolment without a group: group %q reenrolled %v", re.Device.Group, re.Reenrolled)
	}
	f.ingestOK(report(re.Device, t0.Add(2*time.Minute), store.VerdictNoncompliant, nil))
	f.ingestOK(report(f.device(b.ID), t0.Add(2*time.Minute), store.VerdictCompliant, nil))

	counts, err := st.CountFleetByGroup(ctx, store.OfflineCut{Default: t0})
	must(t, err)
	diff(t, "counts by group", []store.GroupCounts{
		{Group: "", FleetCounts: store.FleetCounts{Total: 1, Compliant: 1}},
		{Group: "教育委員会", FleetCounts: store.FleetCounts{Total: 1, Noncompliant: 1}},
	}, counts)

	ds, err := st.ListDevices(ctx, store.DeviceFilter{Group: "教育委員会"})
	must(t, err)
	if len(ds) != 1 || ds[0].ID != a.Device.ID {
		t.Errorf("ListDevices group filter: %d devices", len(ds))
	}
	ds, err = st.ListDevices(ctx, store.DeviceFilter{Group: "教育委員会", Compliance: mamoriv1.Compliance_COMPLIANCE_COMPLIANT, OfflineBefore: t0})
	must(t, err)
	if len(ds) != 0 {
		t.Errorf("group + compliance filter: %d devices, want 0", len(ds))
	}

	// A group with a max report age of its own has its own OFFLINE
	// cut-off: an hour later, the base makes everyone OFFLINE, the group's
	// longer age keeps its device counted as reporting.
	cut := store.OfflineCut{Default: t0.Add(time.Hour), Groups: map[string]time.Time{"教育委員会": t0}}
	counts, err = st.CountFleetByGroup(ctx, cut)
	must(t, err)
	diff(t, "counts by group with a group cut-off", []store.GroupCounts{
		{Group: "", FleetCounts: store.FleetCounts{Total: 1, Offline: 1}},
		{Group: "教育委員会", FleetCounts: store.FleetCounts{Total: 1, Noncompliant: 1}},
	}, counts)
	total, err := st.CountFleet(ctx, cut)
	must(t, err)
	diff(t, "fleet counts with a group cut-off", store.FleetCounts{Total: 2, Offline: 1, Noncompliant: 1}, total)
	for c, want := range map[mamoriv1.Compliance]string{
		mamoriv1.Compliance_COMPLIANCE_OFFLINE:      b.ID,
		mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT: a.Device.ID,
	} {
		ds, err := st.ListDevices(ctx, cut.Filter(store.DeviceFilter{Compliance: c}))
		must(t, err)
		if len(ds) != 1 || ds[0].ID != want {
			t.Errorf("ListDevices %v with a group cut-off: %d devices", c, len(ds))
		}
	}

	moved, err := st.SetDeviceGroup(ctx, b.ID, "市民課")
	must(t, err)
	if moved.Group != "市民課" {
		t.Errorf("SetDeviceGroup: group %q", moved.Group)
	}
	_, err = st.SetDeviceGroup(ctx, "ghost", "x")
	wantErr(t, "SetDeviceGroup of an unknown device", err, store.ErrNotFound)
}
