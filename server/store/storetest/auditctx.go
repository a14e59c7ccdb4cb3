package storetest

import (
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// testAuditedAction: an audit record carried in the context commits with
// the action's transaction — once, chained — and not at all when the
// action fails and rolls back.
func testAuditedAction(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	d := f.enroll("m-audit", "pc-audit", t0).Device
	before := auditLen(t, st)

	// A failing action writes neither the change nor the record.
	actx, p := store.WithAudit(ctx, store.AuditRecord{At: t0, Actor: "op", Action: "device.revoke", Target: "ghost", Detail: "x"})
	if _, err := st.RevokeDevice(actx, "ghost", "x", t0); err == nil {
		t.Fatal("revoking an unknown device succeeded")
	}
	if _, ok := p.Taken(); ok || auditLen(t, st) != before {
		t.Fatalf("a rolled-back action left an audit record (taken %v)", ok)
	}

	// The action and its record commit together; a second write under the
	// same context does not append it again.
	rec := store.AuditRecord{At: t0.Add(time.Minute), Actor: "op", Action: "device.revoke", Target: d.ID, Detail: "盗難"}
	actx, p = store.WithAudit(ctx, rec)
	if _, err := st.RevokeDevice(actx, d.ID, "盗難", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetDeviceGroup(actx, d.ID, "市民課"); err != nil {
		t.Fatal(err)
	}
	stored, ok := p.Taken()
	if !ok || stored.Seq == 0 || len(stored.Hash) == 0 {
		t.Fatalf("record not taken by the action's transaction: %+v %v", stored, ok)
	}
	rs, err := st.ListAudit(ctx, 0, 1000)
	must(t, err)
	if len(rs) != before+1 {
		t.Fatalf("%d audit records, want %d", len(rs), before+1)
	}
	last := rs[len(rs)-1]
	if last.Action != "device.revoke" || last.Target != d.ID || last.Detail != "盗難" || last.Seq != stored.Seq {
		t.Fatalf("last record %+v", last)
	}
	var prev []byte
	if len(rs) > 1 {
		prev = rs[len(rs)-2].Hash
	}
	if string(store.AuditHash(prev, last)) != string(last.Hash) || string(last.PrevHash) != string(prev) {
		t.Fatal("the record committed with the action does not chain")
	}
}

func auditLen(t *testing.T, st store.Store) int {
	t.Helper()
	rs, err := st.ListAudit(t.Context(), 0, 1000)
	must(t, err)
	return len(rs)
}
