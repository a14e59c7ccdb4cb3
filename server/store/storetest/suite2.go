package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

func testBatchErrors(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	a := f.enroll("m-a", "a", t0).Device
	b := f.enroll("m-b", "b", t0).Device
	bad := report(b, t0, "MAYBE", nil, event("x"))
	res := f.ingest(
		report(store.Device{ID: "ghost", CertSerial: "1"}, t0, store.VerdictCompliant, nil, event("g")),
		report(a, t0, store.VerdictCompliant, nil, event("1")),
		bad,
	)
	wantErr(t, "report of an unknown device", res[0].Err, store.ErrNotFound)
	if res[1].Err != nil || res[1].NewEvents != 1 {
		t.Errorf("good report in a mixed batch: %+v", res[1])
	}
	if res[2].Err == nil {
		t.Error("report with verdict MAYBE accepted")
	}
	if n := f.events(""); n != 1 {
		t.Errorf("events stored = %d, want 1", n)
	}
	if got := f.device(b.ID); !got.LastSeen.IsZero() {
		t.Errorf("refused report set LastSeen %v", got.LastSeen)
	}
}

func testSameDeviceTwice(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m", "h", t0).Device
	failed := mamoriv1.ControlState_CONTROL_STATE_FAILED
	ok := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	res := f.ingestOK(
		report(d, t0.Add(time.Minute), store.VerdictNoncompliant, []*mamoriv1.ControlStatus{status("media", failed, "1")}),
		report(d, t0.Add(2*time.Minute), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", ok, "2")}),
	)
	diff(t, "changes", [][]string{{"media"}, {"media"}}, [][]string{res[0].Changes, res[1].Changes})
	got := f.device(d.ID)
	if got.Verdict != store.VerdictCompliant || !got.LastSeen.Equal(us(t0.Add(2*time.Minute))) || !got.FailingSince.IsZero() {
		t.Errorf("after two reports in a batch: verdict %s last seen %v failing since %v", got.Verdict, got.LastSeen, got.FailingSince)
	}
	h, err := st.ControlHistory(t.Context(), d.ID, 0)
	must(t, err)
	if len(h) != 2 || h[0].From != failed || h[0].To != ok {
		t.Errorf("history = %+v, want FAILED→ENFORCED on top of UNSPECIFIED→FAILED", h)
	}
}

// fleet builds one device in every derived state and returns the store's
// cut-off and the IDs expected per compliance filter.
func fleet(t *testing.T, f *fixture) (time.Time, map[mamoriv1.Compliance][]string) {
	now := t0.Add(24 * time.Hour)
	cut := now.Add(-time.Hour)
	want := map[mamoriv1.Compliance][]string{}
	add := func(c mamoriv1.Compliance, verdict string, seen time.Time, revoke bool) {
		d := f.enroll(fmt.Sprintf("m-%d", f.n+1), "h", t0).Device
		if verdict != "" {
			f.ingestOK(report(d, seen, verdict, nil))
		}
		if revoke {
			_, err := f.st.RevokeDevice(f.t.Context(), d.ID, "gone", now)
			must(t, err)
		}
		want[c] = append(want[c], d.ID)
		want[mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED] = append(want[mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED], d.ID)
	}
	for range 3 {
		add(mamoriv1.Compliance_COMPLIANCE_COMPLIANT, store.VerdictCompliant, now, false)
		add(mamoriv1.Compliance_COMPLIANCE_COMPLIANT, store.VerdictCompliant, cut, false) // exactly at the cut-off: online
		add(mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, store.VerdictNoncompliant, now, false)
		add(mamoriv1.Compliance_COMPLIANCE_OFFLINE, store.VerdictCompliant, cut.Add(-time.Microsecond), false)
		add(mamoriv1.Compliance_COMPLIANCE_OFFLINE, store.VerdictNoncompliant, t0, false)
		add(mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, "", time.Time{}, false)
		add(mamoriv1.Compliance_COMPLIANCE_REVOKED, store.VerdictNoncompliant, t0, true)
		add(mamoriv1.Compliance_COMPLIANCE_REVOKED, "", time.Time{}, true)
	}
	return cut, want
}

func testFleet(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	cut, want := fleet(t, f)
	c, err := st.CountFleet(t.Context(), store.OfflineCut{Default: cut})
	must(t, err)
	n := func(c mamoriv1.Compliance) int64 { return int64(len(want[c])) }
	diff(t, "CountFleet", store.FleetCounts{
		Total:         n(mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED),
		Compliant:     n(mamoriv1.Compliance_COMPLIANCE_COMPLIANT),
		Noncompliant:  n(mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT),
		Offline:       n(mamoriv1.Compliance_COMPLIANCE_OFFLINE),
		NeverReported: n(mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED),
		Revoked:       n(mamoriv1.Compliance_COMPLIANCE_REVOKED),
	}, c)
	if sum := c.Compliant + c.Noncompliant + c.Offline + c.NeverReported + c.Revoked; sum != c.Total {
		t.Errorf("buckets add up to %d, total is %d", sum, c.Total)
	}
	for comp, ids := range want {
		t.Run(comp.String(), func(t *testing.T) {
			got, err := st.ListDevices(t.Context(), store.DeviceFilter{Compliance: comp, OfflineBefore: cut, Limit: 1000})
			must(t, err)
			var gotIDs []string
			for _, d := range got {
				gotIDs = append(gotIDs, d.ID)
			}
			slices.Sort(ids)
			diff(t, "ListDevices IDs", ids, gotIDs)
		})
	}
	// Without a cut-off nothing is offline.
	c, err = st.CountFleet(t.Context(), store.OfflineCut{})
	must(t, err)
	if c.Offline != 0 {
		t.Errorf("CountFleet(zero) Offline = %d, want 0", c.Offline)
	}
	got, err := st.ListDevices(t.Context(), store.DeviceFilter{Compliance: mamoriv1.Compliance_COMPLIANCE_OFFLINE})
	if err != nil || len(got) != 0 {
		t.Errorf("ListDevices(OFFLINE, no cut-off) = %d devices, %v; want none", len(got), err)
	}
	if _, err := st.ListDevices(t.Context(), store.DeviceFilter{Compliance: 99}); err == nil {
		t.Error("ListDevices with an unknown compliance value succeeded")
	}
}

func testPaging(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	cut, want := fleet(t, f)
	for comp, ids := range want {
		for _, limit := range []int{1, 2, 5} {
			t.Run(fmt.Sprintf("%s/limit%d", comp, limit), func(t *testing.T) {
				var got []string
				after := ""
				for page := 0; ; page++ {
					ds, err := st.ListDevices(t.Context(), store.DeviceFilter{Compliance: comp, OfflineBefore: cut, AfterID: after, Limit: limit})
					must(t, err)
					if len(ds) > limit || page > 100 {
						t.Fatalf("page %d has %d devices, limit %d", page, len(ds), limit)
					}
					if len(ds) == 0 {
						break
					}
					for _, d := range ds {
						got = append(got, d.ID)
					}
					after = ds[len(ds)-1].ID
				}
				slices.Sort(ids)
				diff(t, "devices over all pages", ids, got)
			})
		}
	}
	// WithoutControls: the same devices, the same rows but the control
	// records.
	d := f.enroll("m-slim", "pc-slim", t0).Device
	f.ingestOK(report(d, t0.Add(time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "in force")}))
	full, err := st.ListDevices(t.Context(), store.DeviceFilter{OfflineBefore: cut, Limit: 1000})
	must(t, err)
	slim, err := st.ListDevices(t.Context(), store.DeviceFilter{OfflineBefore: cut, Limit: 1000, WithoutControls: true})
	must(t, err)
	withControls := 0
	for i := range full {
		if len(full[i].Controls) > 0 {
			withControls++
		}
		full[i].Controls = nil
	}
	if withControls == 0 {
		t.Fatal("no device of the fleet has control records: WithoutControls is not tested")
	}
	diff(t, "devices without their controls", full, slim)
}

func testFindDevice(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	a := f.enroll("m-a", "pc-a", t0).Device
	f.enroll("m-b", "twin", t0)
	f.enroll("m-c", "twin", t0)
	d := f.enroll("m-d", "dev-0001", t0).Device // hostname equal to a's ID
	tests := []struct {
		key, wantID string
		wantErr     error
	}{
		{a.ID, a.ID, nil},
		{"pc-a", a.ID, nil},
		{"twin", "", store.ErrAmbiguous},
		{"nope", "", store.ErrNotFound},
		{"", "", store.ErrNotFound},
		{d.ID, d.ID, nil},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			got, err := st.FindDevice(t.Context(), tc.key)
			if tc.wantErr != nil {
				wantErr(t, "FindDevice", err, tc.wantErr)
				return
			}
			if err != nil || got.ID != tc.wantID {
				t.Errorf("FindDevice(%q) = %s, %v; want %s", tc.key, got.ID, err, tc.wantID)
			}
		})
	}
	// ID wins over hostname.
	got, err := st.FindDevice(t.Context(), "dev-0001")
	if err != nil || got.ID != a.ID {
		t.Errorf("FindDevice(an ID that is also a hostname) = %s, %v; want %s", got.ID, err, a.ID)
	}
}

func testPolicy(t *testing.T, st store.Store) {
	ctx := t.Context()
	p := func(mode mamoriv1.Mode) *mamoriv1.Policy {
		return &mamoriv1.Policy{
			Controls:       map[string]*mamoriv1.ControlPolicy{"media": {Mode: mode, Required: true, Settings: map[string]string{"allow": "none"}}},
			ReportInterval: durationpb.New(5 * time.Minute), MaxReportAge: durationpb.New(time.Hour),
		}
	}
	_, err := st.SetPolicy(ctx, store.PolicyChange{Policy: p(mamoriv1.Mode_MODE_MONITOR)}, 1)
	wantErr(t, "SetPolicy expecting 1 on an empty store", err, store.ErrConflict)
	v1, err := st.SetPolicy(ctx, store.PolicyChange{Policy: p(mamoriv1.Mode_MODE_MONITOR), Actor: "op-1", Reason: "rollout", At: t0}, 0)
	must(t, err)
	if v1.GetVersion() != 1 {
		t.Errorf("first version = %d, want 1", v1.GetVersion())
	}
	_, err = st.SetPolicy(ctx, store.PolicyChange{Policy: p(mamoriv1.Mode_MODE_ENFORCE)}, 0)
	wantErr(t, "SetPolicy with a stale version", err, store.ErrConflict)
	in := p(mamoriv1.Mode_MODE_ENFORCE)
	in.Version = 77 // ignored: the store numbers versions
	v2, err := st.SetPolicy(ctx, store.PolicyChange{Policy: in, Actor: "op-2", Reason: "enforce", At: t0.Add(time.Hour)}, 1)
	must(t, err)
	if in.Version != 77 {
		t.Error("SetPolicy changed the caller's policy")
	}
	want2 := p(mamoriv1.Mode_MODE_ENFORCE)
	want2.Version = 2
	diff(t, "SetPolicy result", want2, v2)
	cur, err := st.CurrentPolicy(ctx)
	must(t, err)
	diff(t, "CurrentPolicy", want2, cur)
	want1 := p(mamoriv1.Mode_MODE_MONITOR)
	want1.Version = 1
	h, err := st.PolicyHistory(ctx, 0)
	must(t, err)
	diff(t, "PolicyHistory", []store.PolicyChange{
		{Policy: want2, Actor: "op-2", Reason: "enforce", At: us(t0.Add(time.Hour))},
		{Policy: want1, Actor: "op-1", Reason: "rollout", At: us(t0)},
	}, h)
	h, err = st.PolicyHistory(ctx, 1)
	must(t, err)
	if len(h) != 1 || h[0].Policy.GetVersion() != 2 {
		t.Errorf("PolicyHistory(1) = %d entries", len(h))
	}
	// Racing writers: exactly one wins each version.
	var wins, conflicts int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			_, err := st.SetPolicy(ctx, store.PolicyChange{Policy: p(mamoriv1.Mode_MODE_ENFORCE), At: t0}, 2)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("racing SetPolicy: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 5 {
		t.Errorf("racing SetPolicy: %d wins, %d conflicts; want 1, 5", wins, conflicts)
	}
}

func testOperators(t *testing.T, st store.Store) {
	ctx := t.Context()
	ops := []store.Operator{
		{ID: "op-1", Name: "山田 太郎", Role: "admin", TokenHash: []byte("hash-1"), CreatedAt: us(t0),
			Token: &store.OperatorToken{ID: "tok-1", Name: "laptop", Hash: []byte("tok-hash-1"), CreatedBy: "system", CreatedAt: us(t0), ExpiresAt: us(t0.Add(24 * time.Hour)), SingleUse: true}},
		{ID: "op-2", Name: "helpdesk", Role: "helpdesk", TokenHash: []byte("hash-2"), CreatedAt: us(t0), DisabledAt: us(t0.Add(time.Hour)),
			Token: &store.OperatorToken{ID: "tok-2", Name: "ci", Hash: []byte("tok-hash-2"), CreatedBy: "op-1", CreatedAt: us(t0), ExpiresAt: us(t0.Add(90 * 24 * time.Hour))}},
	}
	for _, o := range ops {
		must(t, st.CreateOperator(ctx, o))
	}
	wantErr(t, "CreateOperator with a taken ID", st.CreateOperator(ctx, store.Operator{ID: "op-1", TokenHash: []byte("x"), CreatedAt: t0}), store.ErrConflict)
	wantErr(t, "CreateOperator with a taken token", st.CreateOperator(ctx, store.Operator{ID: "op-3", TokenHash: []byte("hash-1"), CreatedAt: t0}), store.ErrConflict)
	wantErr(t, "CreateOperator with a taken API token", st.CreateOperator(ctx, store.Operator{ID: "op-3", CreatedAt: t0,
		Token: &store.OperatorToken{ID: "tok-3", Name: "x", Hash: []byte("tok-hash-1"), CreatedBy: "system", CreatedAt: t0}}), store.ErrConflict)
	for _, o := range ops {
		gotOp, gotTok, err := st.OperatorByTokenHash(ctx, o.Token.Hash)
		must(t, err)
		wantTok := *o.Token
		wantTok.OperatorID = o.ID
		o.Token = nil
		diff(t, "OperatorByTokenHash operator", o, gotOp)
		diff(t, "OperatorByTokenHash token", wantTok, gotTok)
		// The legacy column no longer authenticates.
		_, _, err = st.OperatorByTokenHash(ctx, o.TokenHash)
		wantErr(t, "legacy token hash", err, store.ErrNotFound)
	}
	_, _, err := st.OperatorByTokenHash(ctx, []byte("hash-3"))
	wantErr(t, "unknown token", err, store.ErrNotFound)
	if n, err := st.CountOperators(ctx); err != nil || n != 2 {
		t.Errorf("CountOperators = %d, %v; want 2", n, err)
	}
	// An operator made without a token has none.
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-console", Name: "console only", Role: "officer", CreatedAt: us(t0)}))
	if l, err := st.ListOperatorTokens(ctx, "op-console"); err != nil || len(l) != 0 {
		t.Errorf("console-only operator's tokens = %v, %v; want none", l, err)
	}
}

// testOperatorTokens: named tokens, listed without hashes, revoked one by
// one; a single-use token ends at its first use; a name is free again
// once its token is revoked.
func testOperatorTokens(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-a", Name: "佐藤", Role: "admin", CreatedAt: us(t0),
		Token: &store.OperatorToken{ID: "boot", Name: "bootstrap", Hash: []byte("h-boot"), CreatedBy: "system", CreatedAt: us(t0), ExpiresAt: us(t0.Add(24 * time.Hour)), SingleUse: true}}))
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-b", Name: "鈴木", Role: "helpdesk", CreatedAt: us(t0)}))
	mk := func(id, op, name, hash string) store.OperatorToken {
		return store.OperatorToken{ID: id, OperatorID: op, Name: name, Hash: []byte(hash), CreatedBy: "op-a", CreatedAt: us(t0), ExpiresAt: us(t0.Add(90 * 24 * time.Hour))}
	}
	must(t, st.CreateOperatorToken(ctx, mk("t1", "op-a", "laptop", "h1")))
	must(t, st.CreateOperatorToken(ctx, mk("t2", "op-b", "laptop", "h2")))
	wantErr(t, "a live name twice", st.CreateOperatorToken(ctx, mk("t3", "op-a", "laptop", "h3")), store.ErrConflict)
	wantErr(t, "a taken hash", st.CreateOperatorToken(ctx, mk("t3", "op-b", "ci", "h1")), store.ErrConflict)
	wantErr(t, "an unknown operator", st.CreateOperatorToken(ctx, mk("t3", "op-nobody", "ci", "h3")), store.ErrNotFound)

	all, err := st.ListOperatorTokens(ctx, "")
	must(t, err)
	var got []string
	for _, l := range all {
		if l.Hash != nil {
			t.Errorf("ListOperatorTokens returned the hash of %s", l.Name)
		}
		got = append(got, l.OperatorName+"/"+l.Name)
	}
	diff(t, "ListOperatorTokens", []string{"佐藤/bootstrap", "佐藤/laptop", "鈴木/laptop"}, got)
	mine, err := st.ListOperatorTokens(ctx, "op-b")
	must(t, err)
	if len(mine) != 1 || mine[0].ID != "t2" {
		t.Errorf("ListOperatorTokens(op-b) = %+v", mine)
	}

	// Single use: the first use ends it, a second is refused.
	must(t, st.UseOperatorToken(ctx, "boot", us(t0.Add(time.Minute))))
	wantErr(t, "second use of a single-use token", st.UseOperatorToken(ctx, "boot", us(t0.Add(2*time.Minute))), store.ErrNotFound)
	_, boot, err := st.OperatorByTokenHash(ctx, []byte("h-boot"))
	must(t, err)
	if !boot.RevokedAt.Equal(us(t0.Add(time.Minute))) || boot.RevokedBy != "first use" {
		t.Errorf("bootstrap after use: revoked %v by %q", boot.RevokedAt, boot.RevokedBy)
	}
	// Ordinary tokens: uses are recorded, at most once a minute.
	must(t, st.UseOperatorToken(ctx, "t1", us(t0.Add(time.Minute))))
	must(t, st.UseOperatorToken(ctx, "t1", us(t0.Add(90*time.Second))))
	_, t1, err := st.OperatorByTokenHash(ctx, []byte("h1"))
	must(t, err)
	if !t1.LastUsedAt.Equal(us(t0.Add(time.Minute))) || !t1.RevokedAt.IsZero() {
		t.Errorf("t1 after uses: last used %v, revoked %v", t1.LastUsedAt, t1.RevokedAt)
	}

	// Revoke by name; the name is free again; the revoked one stays listed.
	r, err := st.RevokeOperatorToken(ctx, "op-a", "laptop", "op-a", us(t0.Add(time.Hour)))
	must(t, err)
	if r.ID != "t1" || !r.RevokedAt.Equal(us(t0.Add(time.Hour))) {
		t.Errorf("revoked = %+v", r)
	}
	wantErr(t, "use of a revoked token", st.UseOperatorToken(ctx, "t1", us(t0.Add(2*time.Hour))), store.ErrNotFound)
	_, err = st.RevokeOperatorToken(ctx, "op-a", "laptop", "op-a", us(t0.Add(time.Hour)))
	wantErr(t, "revoke twice", err, store.ErrNotFound)
	_, err = st.RevokeOperatorToken(ctx, "op-b", "nope", "op-a", us(t0))
	wantErr(t, "revoke an unknown name", err, store.ErrNotFound)
	must(t, st.CreateOperatorToken(ctx, mk("t4", "op-a", "laptop", "h4")))
	all, err = st.ListOperatorTokens(ctx, "op-a")
	must(t, err)
	if len(all) != 3 {
		t.Errorf("op-a has %d tokens listed, want 3 (bootstrap, revoked laptop, new laptop)", len(all))
	}
	// Legacy tokens (no expiry) get one; revoked ones are left alone.
	must(t, st.CreateOperatorToken(ctx, store.OperatorToken{ID: "t5", OperatorID: "op-b", Name: "legacy", Hash: []byte("h5"), CreatedBy: "migration", CreatedAt: us(t0)}))
	ids, err := st.ExpireLegacyTokens(ctx, us(t0.Add(30*24*time.Hour)))
	must(t, err)
	diff(t, "ExpireLegacyTokens", []string{"op-b"}, ids)
	_, t5, err := st.OperatorByTokenHash(ctx, []byte("h5"))
	must(t, err)
	if !t5.ExpiresAt.Equal(us(t0.Add(30 * 24 * time.Hour))) {
		t.Errorf("legacy token expires %v", t5.ExpiresAt)
	}
}

func verifyChain(t *testing.T, rs []store.AuditRecord) {
	t.Helper()
	var prev []byte
	for i, r := range rs {
		if r.Seq != int64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if string(r.PrevHash) != string(prev) {
			t.Fatalf("record %d: PrevHash does not link to record %d", r.Seq, r.Seq-1)
		}
		if want := store.AuditHash(prev, r); string(r.Hash) != string(want) {
			t.Fatalf("record %d: Hash %x, want %x", r.Seq, r.Hash, want)
		}
		prev = r.Hash
	}
}

func testAudit(t *testing.T, st store.Store) {
	ctx := t.Context()
	if _, err := st.AuditHead(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuditHead of an empty log: %v, want ErrNotFound", err)
	}
	var appended []store.AuditRecord
	for i := range 5 {
		r, err := st.AppendAudit(ctx, store.AuditRecord{
			At: t0.Add(time.Duration(i) * time.Second), Actor: "op-1", Action: "device.revoke",
			Target: fmt.Sprint("dev-", i), Detail: "理由: 紛失",
			Seq: 99, Hash: []byte("ignored"), // the store fills these
		})
		must(t, err)
		appended = append(appended, r)
	}
	verifyChain(t, appended)
	all, err := st.ListAudit(ctx, 0, 0)
	must(t, err)
	diff(t, "ListAudit vs AppendAudit results", appended, all)
	head, err := st.AuditHead(ctx)
	must(t, err)
	diff(t, "AuditHead", appended[len(appended)-1], head)
	if all[0].At.Location() != time.UTC || !all[0].At.Equal(us(t0)) {
		t.Errorf("At = %v, want %v in UTC", all[0].At, us(t0))
	}
	page, err := st.ListAudit(ctx, 2, 2)
	must(t, err)
	diff(t, "ListAudit(after 2, limit 2)", appended[2:4], page)
}

func testAuditConcurrent(t *testing.T, st store.Store) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				if _, err := st.AppendAudit(t.Context(), store.AuditRecord{At: t0, Actor: fmt.Sprint("g", g), Action: "x", Target: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	all, err := st.ListAudit(t.Context(), 0, 1000)
	must(t, err)
	if len(all) != 80 {
		t.Fatalf("%d records, want 80", len(all))
	}
	verifyChain(t, all)
}

func testIngestConcurrent(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	var devs []store.Device
	for i := range 10 {
		devs = append(devs, f.enroll(fmt.Sprint("m-", i), "h", t0).Device)
	}
	const workers, batches = 6, 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		newTotal int
	)
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				var in []store.ReportInput
				for i, d := range devs {
					// Events overlap between workers: each is stored once.
					in = append(in, report(d, t0.Add(time.Duration(b)*time.Second), store.VerdictCompliant,
						[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState(1+(w+b+i)%4), "")},
						event(fmt.Sprint("b", b, "-", i%3)), event(fmt.Sprint("w", w, "-b", b))))
				}
				res, err := st.IngestReports(t.Context(), in)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, r := range res {
					if r.Err != nil {
						t.Error(r.Err)
					}
					newTotal += r.NewEvents
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Per device: one ID shared by all workers per batch, one of its own
	// per worker and batch.
	wantPer := int64(batches + workers*batches)
	for _, d := range devs {
		if n := f.events(d.ID); n != wantPer {
			t.Errorf("device %s has %d events, want %d", d.ID, n, wantPer)
		}
		h, err := st.ControlHistory(t.Context(), d.ID, 1000)
		must(t, err)
		got := f.device(d.ID)
		if len(h) == 0 || h[0].To != got.Controls[0].GetStatus().GetState() {
			t.Errorf("device %s: newest history entry does not match the snapshot", d.ID)
		}
		for i := 1; i < len(h); i++ {
			if h[i-1].From != h[i].To {
				t.Errorf("device %s: history broken: %v→%v after %v→%v", d.ID, h[i].From, h[i].To, h[i-1].From, h[i-1].To)
			}
		}
	}
	if total := f.events(""); total != int64(newTotal) || total != wantPer*int64(len(devs)) {
		t.Errorf("events stored %d, NewEvents summed %d, want %d", total, newTotal, wantPer*int64(len(devs)))
	}
}

func testCancelled(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m", "h", t0).Device
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := st.IngestReports(ctx, []store.ReportInput{report(d, t0, store.VerdictCompliant, nil, event("e"))}); err == nil {
		t.Error("IngestReports with a cancelled context succeeded")
	}
	if _, err := st.SetPolicy(ctx, store.PolicyChange{Policy: &mamoriv1.Policy{}}, 0); err == nil {
		t.Error("SetPolicy with a cancelled context succeeded")
	}
	if _, err := st.AppendAudit(ctx, store.AuditRecord{Action: "x"}); err == nil {
		t.Error("AppendAudit with a cancelled context succeeded")
	}
	// Cancelled in the middle of an enrolment, after the token was checked.
	must(t, st.CreateToken(t.Context(), store.Token{ID: "one", Hash: []byte("h1"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1}))
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	_, err := st.Enroll(ctx, store.EnrollParams{
		TokenHash: []byte("h1"), Now: t0, Facts: facts("m-new", "h"), NewDeviceID: "dev-cancel",
		Sign: func(string) ([]byte, string, error) { cancel(); return []byte("c"), "99", nil },
	})
	if err == nil {
		t.Error("Enroll cancelled during Sign succeeded")
	}
	if _, err := st.GetDevice(t.Context(), "dev-cancel"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancelled enrolment stored the device: %v", err)
	}
	if _, err := f.enrollErr([]byte("h1"), "m-new", "h", t0); err != nil {
		t.Errorf("token use consumed by a cancelled enrolment: %v", err)
	}
	if n := f.events(""); n != 0 {
		t.Errorf("%d events stored by a cancelled ingest", n)
	}
	if got := f.device(d.ID); !got.LastSeen.IsZero() {
		t.Errorf("cancelled ingest set LastSeen %v", got.LastSeen)
	}
	if _, err := st.CurrentPolicy(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancelled SetPolicy stored a policy: %v", err)
	}
	if rs, _ := st.ListAudit(t.Context(), 0, 0); len(rs) != 0 {
		t.Errorf("cancelled AppendAudit stored %d records", len(rs))
	}
}

func testTimePrecision(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	at := time.Date(2026, 4, 2, 23, 59, 59, 999999999, jst) // rounds down, never up
	d := f.enroll("m", "h", at).Device
	f.ingestOK(report(d, at, store.VerdictNoncompliant, nil))
	got := f.device(d.ID)
	for name, tm := range map[string]time.Time{"EnrolledAt": got.EnrolledAt, "LastSeen": got.LastSeen, "FailingSince": got.FailingSince} {
		if !tm.Equal(us(at)) || tm.Location() != time.UTC || tm.Nanosecond()%1000 != 0 {
			t.Errorf("%s = %v, want %v (UTC, microseconds)", name, tm, us(at))
		}
	}
	for name, tm := range map[string]time.Time{"RevokedAt": got.RevokedAt} {
		if !tm.IsZero() {
			t.Errorf("%s = %v, want zero", name, tm)
		}
	}
}

func testOddInput(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	long := strings.Repeat("端末", 5000) + "'; DROP TABLE devices; --"
	d := f.enroll(long, long, t0).Device
	r2, err := f.reenroll(d, long, long, t0)
	must(t, err)
	d2 := r2.Device
	if d2.ID != d.ID {
		t.Errorf("long machine ID not matched on re-enrolment")
	}
	if c := f.enroll(long, "clone", t0); c.CloneOf != d.ID {
		t.Errorf("long machine ID claimed: clone of %q, want %s", c.CloneOf, d.ID)
	}
	d.CertSerial = d2.CertSerial
	f.ingestOK(report(d, t0, store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status(long, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, long)},
		event(long), event(""), event("")))
	got, err := st.FindDevice(t.Context(), long)
	if err != nil || got.Facts.GetHostname() != long {
		t.Errorf("FindDevice(long hostname) = %s, %v", got.ID, err)
	}
	if n := f.events(d.ID); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
	// A NUL byte is legal in Go strings but not in every database's text:
	// the store may refuse it, but must stay usable.
	nul := f.st
	_, _ = nul.FindDevice(t.Context(), "a\x00b")
	_, _ = nul.IngestReports(t.Context(), []store.ReportInput{report(d, t0, store.VerdictCompliant, nil, event("x\x00y"))})
	f.ingestOK(report(d, t0.Add(time.Second), store.VerdictCompliant, nil, event("after")))
}
