package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
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

// testAuditFields: what only the transaction knows reaches the record it
// commits — the MFA generation (AuditField from the backend), a retried
// enrolment, the device an enrolment names (AmendAudit from Sign) — and a
// call that changes nothing takes no record.
func testAuditFields(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()

	actx, p := store.WithAudit(ctx, store.AuditRecord{At: t0, Actor: "op", Action: "mfa.enroll", Target: "user:tanaka", Detail: "method=totp"})
	g, err := st.PutMFAUser(actx, store.MFAUser{User: "tanaka", SealedSecret: []byte{1}, Algorithm: "SHA1", Digits: 6,
		PeriodSeconds: 30, RecoverySalt: []byte("s"), CreatedAt: t0, CreatedBy: "op"}, false)
	must(t, err)
	if rec, ok := p.Taken(); !ok || rec.Detail != fmt.Sprintf("method=totp generation=%d", g) {
		t.Fatalf("mfa.enroll record %q (taken %v); want the generation %d in it", rec.Detail, ok, g)
	}

	// Nothing to consume: no write, no record.
	before := auditLen(t, st)
	actx, p = store.WithAudit(ctx, store.AuditRecord{At: t0, Actor: "device:d", Action: "mfa.code_used", Detail: "code_ids=ffff"})
	if n, err := st.ConsumeMFACodes(actx, "tanaka", []string{"ffff"}, t0); err != nil || n != 0 {
		t.Fatalf("consume an unknown code: %d, %v", n, err)
	}
	if _, ok := p.Taken(); ok || auditLen(t, st) != before {
		t.Fatal("consuming nothing took an audit record")
	}
	_, err = st.PutMFATempCode(ctx, store.MFATempCode{ID: "abcd", User: "tanaka", Salt: []byte("s"), Hash: strings.Repeat("c", 64),
		CreatedAt: t0, CreatedBy: "op", ExpiresAt: t0.Add(time.Hour)})
	must(t, err)
	actx, p = store.WithAudit(ctx, store.AuditRecord{At: t0, Actor: "device:d", Action: "mfa.code_used", Detail: "code_ids=abcd"})
	n, err := st.ConsumeMFACodes(actx, "tanaka", []string{"abcd"}, t0)
	must(t, err)
	g, err = st.MFAGeneration(ctx)
	must(t, err)
	if rec, ok := p.Taken(); n != 1 || !ok || rec.Detail != fmt.Sprintf("code_ids=abcd consumed=1 generation=%d", g) {
		t.Fatalf("consumed %d; record %q (taken %v)", n, rec.Detail, ok)
	}

	// Enrolment: Sign (inside the transaction) names the device; the same
	// machine, token and key again is a retry and says so.
	enroll := func(newID string) (store.EnrollResult, store.AuditRecord, bool) {
		actx, p := store.WithAudit(ctx, store.AuditRecord{At: t0, Actor: "device:" + newID, Action: "device.enroll", Target: newID, Detail: "hostname=pc"})
		res, err := st.Enroll(actx, store.EnrollParams{TokenHash: f.token, Now: t0, Facts: facts("m-af", "pc"), NewDeviceID: newID,
			KeyHash: []byte("key-af"), Sign: func(id string) ([]byte, string, error) {
				store.AmendAudit(actx, func(r *store.AuditRecord) {
					r.Target = id
					if id != newID {
						r.Action = "device.reenroll"
					}
				})
				return []byte("c"), "5e" + newID, nil
			}})
		must(t, err)
		rec, ok := p.Taken()
		return res, rec, ok
	}
	first, rec, ok := enroll("dev-af-1")
	if !ok || rec.Action != "device.enroll" || rec.Target != first.Device.ID || rec.Detail != "hostname=pc" {
		t.Fatalf("first enrolment recorded %+v (taken %v)", rec, ok)
	}
	_, rec, ok = enroll("dev-af-2")
	if !ok || rec.Action != "device.reenroll" || rec.Target != first.Device.ID || rec.Detail != "hostname=pc retry=same-key" {
		t.Fatalf("retried enrolment recorded %+v (taken %v)", rec, ok)
	}
	rs, err := st.ListAudit(ctx, 0, 1000)
	must(t, err)
	if last := rs[len(rs)-1]; last.Detail != rec.Detail || last.Target != first.Device.ID {
		t.Fatalf("stored record %+v; want the amended one", last)
	}
}

// testComplianceAudit: every change of a device's verdict is a record in
// the hash chain, committed with the report that caused it; a report that
// changes nothing adds none; two flips of one device in one batch are two
// records, in order; a refused report records nothing.
func testComplianceAudit(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	d := f.enroll("m-ca", "pc-ca", t0).Device
	other := f.enroll("m-ca2", "pc-ca2", t0).Device
	changes := func() []store.AuditRecord {
		t.Helper()
		rs, err := st.ListAudit(ctx, 0, 1000)
		must(t, err)
		var out []store.AuditRecord
		for _, r := range rs {
			if r.Action == "compliance.change" {
				out = append(out, r)
			}
		}
		return out
	}
	ok := []*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")}
	f.ingestOK(report(d, t0.Add(time.Minute), store.VerdictCompliant, ok))
	f.ingestOK(report(d, t0.Add(2*time.Minute), store.VerdictCompliant, ok))
	bad := report(d, t0.Add(3*time.Minute), store.VerdictNoncompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_FAILED, "udev rule missing")})
	bad.Reasons = []string{"media: udev rule missing", strings.Repeat("長い理由", 200)}
	back := report(d, t0.Add(4*time.Minute), store.VerdictCompliant, ok)
	f.ingestOK(bad, back, report(other, t0.Add(4*time.Minute), store.VerdictCompliant, ok))

	// Refused: a superseded certificate changes nothing and records nothing.
	stale := report(d, t0.Add(5*time.Minute), store.VerdictNoncompliant, ok)
	stale.CertSerial = "not-the-serial"
	if res := f.ingest(stale); res[0].Err == nil {
		t.Fatal("a report with a foreign certificate serial was accepted")
	}

	got := changes()
	want := []struct{ target, prefix string }{
		{d.ID, "NEVER_REPORTED → COMPLIANT"},
		{d.ID, "COMPLIANT → NONCOMPLIANT reasons=media: udev rule missing; 長い理由"},
		{d.ID, "NONCOMPLIANT → COMPLIANT"},
		{other.ID, "NEVER_REPORTED → COMPLIANT"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d compliance changes audited, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Target != w.target || g.Actor != "device:"+w.target || !strings.HasPrefix(g.Detail, w.prefix) {
			t.Errorf("change %d: %s %s %q; want %s %q…", i, g.Actor, g.Target, g.Detail, w.target, w.prefix)
		}
		if len(g.Detail) > 1010 || !utf8.ValidString(g.Detail) {
			t.Errorf("change %d: detail of %d bytes (valid UTF-8 %v); want at most ~1,000, cut on a character", i, len(g.Detail), utf8.ValidString(g.Detail))
		}
	}
	if !got[0].At.Equal(t0.Add(time.Minute).Truncate(time.Microsecond)) || !got[2].At.Equal(t0.Add(4*time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("changes at %v and %v; want the reports' times", got[0].At, got[2].At)
	}
	// The chain still verifies from its first record.
	rs, err := st.ListAudit(ctx, 0, 1000)
	must(t, err)
	var prev []byte
	for _, r := range rs {
		if string(r.PrevHash) != string(prev) || string(store.AuditHash(prev, r)) != string(r.Hash) {
			t.Fatalf("audit chain breaks at seq %d", r.Seq)
		}
		prev = r.Hash
	}
}
