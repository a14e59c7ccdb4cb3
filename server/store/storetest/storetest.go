// Package storetest is the conformance suite every store.Store backend
// passes, and the benchmarks they share. Backends call Run from their own
// tests with a function that opens a fresh, empty store.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Opener opens a fresh, empty store for one test; the opener registers
// its cleanup with t.
type Opener func(t *testing.T) store.Store

// Run runs the whole suite; every subtest gets its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"EmptyStore", testEmptyStore},
		{"TokenRefusals", testTokenRefusals},
		{"TokenUses", testTokenUses},
		{"SignFailureWritesNothing", testSignFailure},
		{"EnrollNewDevice", testEnrollNewDevice},
		{"Reenroll", testReenroll},
		{"AttestedEnroll", testAttestedEnroll},
		{"EnrollRetry", testEnrollRetry},
		{"EnrollRetryConcurrent", testEnrollRetryConcurrent},
		{"Renew", testRenew},
		{"Revoke", testRevoke},
		{"ApproveCloneLive", testApproveCloneLive},
		{"EnrollFailuresAndEKs", testEnrollFailuresAndEKs},
		{"EventsOncePerDevice", testEvents},
		{"ListEventsPaging", testListEventsPaging},
		{"FileLog", testFileLog}, // filelog.go
		{"ControlHistory", testControlHistory},
		{"VerdictAndFailingSince", testVerdict},
		{"Facts", testFacts},
		{"BatchPerReportErrors", testBatchErrors},
		{"TwoReportsOfOneDeviceInABatch", testSameDeviceTwice},
		{"FleetCountsAndFilters", testFleet},
		{"ListDevicesPaging", testPaging},
		{"DeviceList", testDeviceList}, // devicelist.go
		{"FindDevice", testFindDevice},
		{"Policy", testPolicy},
		{"Operators", testOperators},
		{"OperatorTokens", testOperatorTokens},
		{"AuditChain", testAudit},
		{"AuditConcurrent", testAuditConcurrent},
		{"AuditPage", testAuditPage}, // auditpage.go
		{"Console", testConsole},
		{"IngestConcurrent", testIngestConcurrent},
		{"ContextCancelled", testCancelled},
		{"TimePrecision", testTimePrecision},
		{"OddInput", testOddInput},
		{"MFAUsers", testMFAUsers},
		{"Groups", testGroups},
		{"AuditedAction", testAuditedAction},
		{"AuditFieldsFromTheTransaction", testAuditFields},
		{"ComplianceChangesAudited", testComplianceAudit},
		{"MFALifecycle", testMFALifecycle},
		{"KeepVerdict", testKeepVerdict},
		{"MFALoginState", testMFALoginState},
		{"Exceptions", testExceptions}, // exceptions.go
		{"Ledger", testLedger},
		{"Evidence", testEvidence},
		{"ConcurrentReadModifyWrite", testConcurrentReadModifyWrite}, // locking.go
		{"DifferentialReports", testDifferential},                    // diffreport.go
		{"TouchDevices", testTouchDevices},
		{"TouchDevicesBesideIngest", testTouchDevicesBesideIngest},
		{"WatchBesideIngest", testWatchBesideIngest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// t0 has nanoseconds and a non-UTC zone on purpose: stores must return
// it in UTC, truncated to the microsecond.
var (
	jst = time.FixedZone("JST", 9*3600)
	t0  = time.Date(2026, 4, 1, 9, 30, 0, 123456789, jst)
)

func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

var cmpOpts = []cmp.Option{protocmp.Transform(), cmpopts.EquateEmpty()}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// fixture wraps a store with helpers for building its content.
type fixture struct {
	t     *testing.T
	st    store.Store
	token []byte
	n     int
}

func newFixture(t *testing.T, st store.Store) *fixture {
	f := &fixture{t: t, st: st, token: []byte("fixture-token-hash-0000000000000")}
	must(t, st.CreateToken(t.Context(), store.Token{
		ID: "tok-fixture", Hash: f.token, CreatedAt: t0, ExpiresAt: t0.Add(1000 * time.Hour), Uses: 1 << 30,
	}))
	return f
}

func facts(machineID, host string) *mamoriv1.DeviceFacts {
	return &mamoriv1.DeviceFacts{Hostname: host, Os: "linux", OsVersion: "debian 13", MachineId: machineID, AgentVersion: "1.0.0"}
}

// enroll enrols (or re-enrols) the machine and returns the result.
func (f *fixture) enroll(machineID, host string, at time.Time) store.EnrollResult {
	f.t.Helper()
	res, err := f.enrollErr(f.token, machineID, host, at)
	must(f.t, err)
	return res
}

func (f *fixture) enrollErr(token []byte, machineID, host string, at time.Time) (store.EnrollResult, error) {
	f.n++
	serial := fmt.Sprintf("%x", 0x1000+f.n)
	return f.st.Enroll(f.t.Context(), store.EnrollParams{
		TokenHash:   token,
		Now:         at,
		Facts:       facts(machineID, host),
		NewDeviceID: fmt.Sprintf("dev-%04d", f.n),
		Sign: func(id string) ([]byte, string, error) {
			return []byte("cert for " + id + " " + serial), serial, nil
		},
	})
}

// reenroll re-enrols device d with a proof of its current key (the
// server checked the signature; the store gets the device and serial).
func (f *fixture) reenroll(d store.Device, machineID, host string, at time.Time) (store.EnrollResult, error) {
	f.n++
	serial := fmt.Sprintf("%x", 0x1000+f.n)
	return f.st.Enroll(f.t.Context(), store.EnrollParams{
		TokenHash:      f.token,
		Now:            at,
		Facts:          facts(machineID, host),
		NewDeviceID:    fmt.Sprintf("dev-%04d", f.n),
		ProvenDeviceID: d.ID,
		ProvenSerial:   d.CertSerial,
		Sign: func(id string) ([]byte, string, error) {
			return []byte("cert for " + id + " " + serial), serial, nil
		},
	})
}

func status(control string, s mamoriv1.ControlState, detail string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{
		Control: control, Mode: mamoriv1.Mode_MODE_ENFORCE, State: s, Detail: detail,
		Evidence: map[string]string{"k": detail}, ObservedAt: timestamppb.New(t0),
	}
}

func event(id string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: id, Time: timestamppb.New(t0), Control: "media", Kind: "usb_blocked",
		Attributes: map[string]string{"vendor": "0781"}}
}

func report(d store.Device, at time.Time, verdict string, sts []*mamoriv1.ControlStatus, evs ...*mamoriv1.Event) store.ReportInput {
	return store.ReportInput{
		DeviceID: d.ID, CertSerial: d.CertSerial, ReceivedAt: at, Statuses: sts, Events: evs,
		PolicyVersion: 3, Verdict: verdict,
	}
}

// ingest stores one batch and fails the test on a batch error.
func (f *fixture) ingest(in ...store.ReportInput) []store.ReportResult {
	f.t.Helper()
	res, err := f.st.IngestReports(f.t.Context(), in)
	must(f.t, err)
	if len(res) != len(in) {
		f.t.Fatalf("IngestReports returned %d results for %d reports", len(res), len(in))
	}
	return res
}

func (f *fixture) ingestOK(in ...store.ReportInput) []store.ReportResult {
	f.t.Helper()
	res := f.ingest(in...)
	for i, r := range res {
		if r.Err != nil {
			f.t.Fatalf("report %d: %v", i, r.Err)
		}
	}
	return res
}

func (f *fixture) device(id string) store.Device {
	f.t.Helper()
	d, err := f.st.GetDevice(f.t.Context(), id)
	must(f.t, err)
	return d
}

func (f *fixture) events(id string) int64 {
	f.t.Helper()
	n, err := f.st.CountEvents(f.t.Context(), id)
	must(f.t, err)
	return n
}

func testEmptyStore(t *testing.T, st store.Store) {
	ctx := t.Context()
	_, err := st.CurrentPolicy(ctx)
	wantErr(t, "CurrentPolicy", err, store.ErrNotFound)
	_, err = st.GetDevice(ctx, "nope")
	wantErr(t, "GetDevice", err, store.ErrNotFound)
	_, err = st.FindDevice(ctx, "nope")
	wantErr(t, "FindDevice", err, store.ErrNotFound)
	_, _, err = st.DeviceCredential(ctx, "nope")
	wantErr(t, "DeviceCredential", err, store.ErrNotFound)
	_, err = st.RevokeDevice(ctx, "nope", "x", t0)
	wantErr(t, "RevokeDevice", err, store.ErrNotFound)
	_, _, err = st.OperatorByTokenHash(ctx, []byte("x"))
	wantErr(t, "OperatorByTokenHash", err, store.ErrNotFound)
	c, err := st.CountFleet(ctx, store.OfflineCut{Default: t0})
	must(t, err)
	diff(t, "CountFleet", store.FleetCounts{}, c)
	res, err := st.IngestReports(ctx, nil)
	if err != nil || len(res) != 0 {
		t.Errorf("IngestReports(nil) = %v, %v; want no results, nil", res, err)
	}
	for name, n := range map[string]func() (int64, error){
		"CountEvents":    func() (int64, error) { return st.CountEvents(ctx, "") },
		"CountOperators": func() (int64, error) { n, err := st.CountOperators(ctx); return int64(n), err },
	} {
		if got, err := n(); err != nil || got != 0 {
			t.Errorf("%s = %d, %v; want 0", name, got, err)
		}
	}
	for name, l := range map[string]func() (int, error){
		"ListDevices":    func() (int, error) { d, err := st.ListDevices(ctx, store.DeviceFilter{}); return len(d), err },
		"ListEvents":     func() (int, error) { d, err := st.ListEvents(ctx, store.EventFilter{}); return len(d), err },
		"ListAudit":      func() (int, error) { d, err := st.ListAudit(ctx, 0, 0); return len(d), err },
		"PolicyHistory":  func() (int, error) { d, err := st.PolicyHistory(ctx, 0); return len(d), err },
		"ControlHistory": func() (int, error) { d, err := st.ControlHistory(ctx, "nope", 0); return len(d), err },
	} {
		if got, err := l(); err != nil || got != 0 {
			t.Errorf("%s = %d items, %v; want none", name, got, err)
		}
	}
}

func testTokenRefusals(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	for _, tok := range []store.Token{
		{ID: "expired", Hash: []byte("h-expired"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 5},
		{ID: "usedup", Hash: []byte("h-usedup"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 2, Used: 2},
	} {
		must(t, st.CreateToken(ctx, tok))
	}
	wantErr(t, "CreateToken with a taken ID", st.CreateToken(ctx, store.Token{ID: "expired", Hash: []byte("other"), ExpiresAt: t0}), store.ErrConflict)
	wantErr(t, "CreateToken with a taken hash", st.CreateToken(ctx, store.Token{ID: "other", Hash: []byte("h-usedup"), ExpiresAt: t0}), store.ErrConflict)
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  error
	}{
		{"unknown", "h-nope", t0, store.ErrTokenUnknown},
		{"expired exactly at expiry", "h-expired", t0.Add(time.Hour), store.ErrTokenExpired},
		{"expired after", "h-expired", t0.Add(2 * time.Hour), store.ErrTokenExpired},
		{"used up", "h-usedup", t0, store.ErrTokenUsedUp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.enrollErr([]byte(tc.token), "m-refused", "refused", tc.at)
			wantErr(t, "Enroll", err, tc.want)
		})
	}
	c, err := st.CountFleet(ctx, store.OfflineCut{Default: t0})
	must(t, err)
	if c.Total != 0 {
		t.Errorf("refused enrolments created %d devices", c.Total)
	}
	// Still valid a microsecond before expiry, and the refusals above
	// consumed none of its uses.
	for i := range 5 {
		if _, err := f.enrollErr([]byte("h-expired"), fmt.Sprint("m-ok-", i), "ok", t0.Add(time.Hour-time.Microsecond)); err != nil {
			t.Fatalf("enrolment %d: %v", i, err)
		}
	}
	_, err = f.enrollErr([]byte("h-expired"), "m-ok-6", "ok", t0)
	wantErr(t, "sixth enrolment on a 5-use token", err, store.ErrTokenUsedUp)
}

func testTokenUses(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	must(t, st.CreateToken(t.Context(), store.Token{ID: "three", Hash: []byte("h3"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 3, Note: "batch A", CreatedBy: "op-1"}))
	for i := range 3 {
		// Re-enrolment counts a use too.
		if _, err := f.enrollErr([]byte("h3"), "m-same", "host", t0); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	_, err := f.enrollErr([]byte("h3"), "m-other", "host", t0)
	wantErr(t, "fourth use", err, store.ErrTokenUsedUp)
}

func testSignFailure(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, st.CreateToken(ctx, store.Token{ID: "one", Hash: []byte("h1"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1}))
	boom := errors.New("CA offline")
	var signedFor string
	_, err := st.Enroll(ctx, store.EnrollParams{
		TokenHash: []byte("h1"), Now: t0, Facts: facts("m1", "h"), NewDeviceID: "dev-1",
		Sign: func(id string) ([]byte, string, error) { signedFor = id; return nil, "", boom },
	})
	wantErr(t, "Enroll with failing Sign", err, boom)
	if signedFor != "dev-1" {
		t.Errorf("Sign got device ID %q, want dev-1", signedFor)
	}
	if _, err := st.GetDevice(ctx, "dev-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device stored although Sign failed: %v", err)
	}
	// The failed attempt did not use the single use up.
	f := &fixture{t: t, st: st}
	if _, err := f.enrollErr([]byte("h1"), "m1", "h", t0); err != nil {
		t.Fatalf("enrol after failed Sign: %v", err)
	}
	_, err = f.enrollErr([]byte("h1"), "m2", "h", t0)
	wantErr(t, "second use of a 1-use token", err, store.ErrTokenUsedUp)
}

func testEnrollNewDevice(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	res := f.enroll("m-1", "pc-01", t0)
	if res.Reenrolled {
		t.Error("Reenrolled = true for a new device")
	}
	if string(res.CertDER) != "cert for dev-0001 1001" {
		t.Errorf("CertDER = %q", res.CertDER)
	}
	want := store.Device{
		ID: "dev-0001", Facts: facts("m-1", "pc-01"), EnrolledAt: us(t0), CertSerial: "1001",
		Verdict: store.VerdictNeverReported,
	}
	diff(t, "EnrollResult.Device", want, res.Device)
	diff(t, "GetDevice", want, f.device("dev-0001"))
	serial, revoked, err := st.DeviceCredential(t.Context(), "dev-0001")
	if err != nil || serial != "1001" || !revoked.IsZero() {
		t.Errorf("DeviceCredential = %q, %v, %v; want 1001, zero, nil", serial, revoked, err)
	}
	// No machine ID: every enrolment is a new device.
	a, err := f.enrollErr(f.token, "", "anon", t0)
	must(t, err)
	b, err := f.enrollErr(f.token, "", "anon", t0)
	must(t, err)
	if a.Device.ID == b.Device.ID || a.Reenrolled || b.Reenrolled {
		t.Errorf("enrolments without machine ID: %s and %s (reenrolled %v %v), want two new devices", a.Device.ID, b.Device.ID, a.Reenrolled, b.Reenrolled)
	}
}

func testReenroll(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	first := f.enroll("m-1", "pc-01", t0).Device
	f.ingestOK(report(first, t0.Add(time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "ok")}, event("e1")))
	before := f.device(first.ID)

	// The machine ID alone (no proof): a new record, flagged as a
	// possible clone; the device it named is untouched.
	clone := f.enroll("m-1", "attacker", t0.Add(30*time.Minute))
	if clone.Reenrolled || clone.Device.ID == first.ID || clone.CloneOf != first.ID || clone.Device.CloneOf != first.ID {
		t.Fatalf("claimed machine ID: device %s reenrolled %v clone of %q/%q; want a new record flagged as a clone of %s",
			clone.Device.ID, clone.Reenrolled, clone.CloneOf, clone.Device.CloneOf, first.ID)
	}
	diff(t, "device whose machine ID was claimed", before, f.device(first.ID))
	// A proof with a certificate the device no longer has is no proof.
	stale := first
	stale.CertSerial = "0ld"
	if r, err := f.reenroll(stale, "m-1", "attacker", t0.Add(40*time.Minute)); err != nil || r.Device.ID == first.ID || r.CloneOf != first.ID {
		t.Fatalf("stale proof: device %s clone of %q, %v; want a new flagged record", r.Device.ID, r.CloneOf, err)
	}
	diff(t, "device after a stale proof", before, f.device(first.ID))

	res, err := f.reenroll(first, "m-1", "pc-01-new", t0.Add(time.Hour))
	must(t, err)
	if !res.Reenrolled || res.Device.ID != first.ID || res.By != "key" || res.CloneOf != "" {
		t.Fatalf("re-enrolment with proof: ID %s reenrolled %v by %q clone of %q; want %s, true, key", res.Device.ID, res.Reenrolled, res.By, res.CloneOf, first.ID)
	}
	if res.Device.CertSerial == first.CertSerial {
		t.Fatal("re-enrolment kept the old certificate serial")
	}
	want := before
	want.CertSerial = res.Device.CertSerial
	want.Facts = facts("m-1", "pc-01-new")
	want.EnrolledAt = us(t0.Add(time.Hour))
	diff(t, "re-enrolled device", want, f.device(first.ID))
	serial, _, err := st.DeviceCredential(t.Context(), first.ID)
	if err != nil || serial != res.Device.CertSerial {
		t.Errorf("DeviceCredential serial = %q, %v; want %q", serial, err, res.Device.CertSerial)
	}

	old := report(first, t0.Add(2*time.Hour), store.VerdictNoncompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_FAILED, "x")}, event("e2"))
	r := f.ingest(old)
	wantErr(t, "report with the old serial", r[0].Err, store.ErrCertSuperseded)
	diff(t, "device after a superseded report", want, f.device(first.ID))
	if n := f.events(first.ID); n != 1 {
		t.Errorf("events after a superseded report = %d, want 1", n)
	}
	old.CertSerial = res.Device.CertSerial
	f.ingestOK(old)
}

func testRevoke(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	d := f.enroll("m-1", "pc-01", t0).Device
	f.ingestOK(report(d, t0.Add(time.Minute), store.VerdictNoncompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_FAILED, "bad")}, event("e1")))
	revokedAt := t0.Add(time.Hour)
	got, err := st.RevokeDevice(ctx, d.ID, "stolen", revokedAt)
	must(t, err)
	want := f.device(d.ID)
	if got.Verdict != store.VerdictRevoked || !got.RevokedAt.Equal(us(revokedAt)) || got.RevokedReason != "stolen" || !got.FailingSince.IsZero() {
		t.Errorf("revoked device: verdict %s at %v reason %q failing since %v", got.Verdict, got.RevokedAt, got.RevokedReason, got.FailingSince)
	}
	diff(t, "RevokeDevice result vs GetDevice", want, got)
	_, rev, err := st.DeviceCredential(ctx, d.ID)
	if err != nil || !rev.Equal(us(revokedAt)) {
		t.Errorf("DeviceCredential revokedAt = %v, %v; want %v", rev, err, us(revokedAt))
	}
	again, err := st.RevokeDevice(ctx, d.ID, "again", revokedAt.Add(time.Hour))
	must(t, err)
	diff(t, "second revocation changes nothing", want, again)

	r := f.ingest(report(d, t0.Add(2*time.Hour), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "ok")}, event("e2")))
	wantErr(t, "report of a revoked device", r[0].Err, store.ErrDeviceRevoked)
	diff(t, "device after a refused report", want, f.device(d.ID))
	if n := f.events(d.ID); n != 1 {
		t.Errorf("events after a refused report = %d, want 1", n)
	}
	h, err := st.ControlHistory(ctx, d.ID, 0)
	must(t, err)
	if len(h) != 1 {
		t.Errorf("history after a refused report has %d entries, want 1", len(h))
	}

	// Enrolment never lifts a revocation: with the device's own key it
	// is refused; naming its machine ID makes a new, flagged record.
	_, err = f.reenroll(d, "m-1", "pc-01", t0.Add(3*time.Hour))
	wantErr(t, "re-enrolment of a revoked device with its key", err, store.ErrDeviceRevoked)
	diff(t, "revoked device after a refused re-enrolment", want, f.device(d.ID))
	res := f.enroll("m-1", "thief", t0.Add(3*time.Hour))
	if res.Device.ID == d.ID || res.Reenrolled || res.CloneOf != d.ID {
		t.Fatalf("machine ID of a revoked device: %s (reenrolled %v, clone of %q); want a new record flagged as a clone of %s",
			res.Device.ID, res.Reenrolled, res.CloneOf, d.ID)
	}
	diff(t, "revoked device after a clone enrolled", want, f.device(d.ID))

	// The officer confirms the new record is the re-imaged terminal: it
	// takes over the machine ID; the old record stays revoked as it was.
	approved, replaced, err := st.ApproveClone(ctx, res.Device.ID, t0.Add(4*time.Hour))
	must(t, err)
	if approved.CloneOf != "" || approved.Facts.GetMachineId() != "m-1" {
		t.Errorf("approved: clone of %q machine %q", approved.CloneOf, approved.Facts.GetMachineId())
	}
	diff(t, "replaced record (revoked already)", want, replaced)
	_, _, err = st.ApproveClone(ctx, res.Device.ID, t0.Add(4*time.Hour))
	wantErr(t, "approving an approved device", err, store.ErrNotClone)
	_, _, err = st.ApproveClone(ctx, "no-such-device", t0)
	wantErr(t, "approving an unknown device", err, store.ErrNotFound)
	// The machine ID now names the approved record: its proof works, a
	// claim makes a clone of it.
	if r, err := f.reenroll(approved, "m-1", "pc-01", t0.Add(5*time.Hour)); err != nil || r.Device.ID != approved.ID {
		t.Fatalf("re-enrolment of the approved record: %s, %v", r.Device.ID, err)
	}
	if r := f.enroll("m-1", "x", t0.Add(5*time.Hour)); r.CloneOf != approved.ID {
		t.Errorf("claim after approval: clone of %q, want %s", r.CloneOf, approved.ID)
	}
}

// testApproveCloneLive: approving a clone of a device that is not
// revoked revokes it, naming the new record, and moves the group.
func testApproveCloneLive(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	d := f.enroll("m-live", "pc", t0).Device
	_, err := st.SetDeviceGroup(ctx, d.ID, "税務課")
	must(t, err)
	c := f.enroll("m-live", "pc", t0.Add(time.Hour))
	approved, replaced, err := st.ApproveClone(ctx, c.Device.ID, t0.Add(2*time.Hour))
	must(t, err)
	if replaced.RevokedAt.IsZero() || !strings.Contains(replaced.RevokedReason, c.Device.ID) || replaced.Verdict != store.VerdictRevoked {
		t.Errorf("replaced record: revoked %v reason %q verdict %s", replaced.RevokedAt, replaced.RevokedReason, replaced.Verdict)
	}
	if approved.Group != "税務課" || approved.CloneOf != "" {
		t.Errorf("approved record: group %q clone of %q", approved.Group, approved.CloneOf)
	}
	if r := f.ingest(report(d, t0.Add(3*time.Hour), store.VerdictCompliant, nil)); !errors.Is(r[0].Err, store.ErrDeviceRevoked) {
		t.Errorf("report of the replaced record: %v", r[0].Err)
	}
}

// testEnrollFailuresAndEKs: the enrolment failures and the approved EK
// list round-trip.
func testEnrollFailuresAndEKs(t *testing.T, st store.Store) {
	ctx := t.Context()
	f := newFixture(t, st)
	must(t, st.CheckToken(ctx, f.token, t0))
	wantErr(t, "CheckToken after expiry", st.CheckToken(ctx, f.token, t0.Add(2000*time.Hour)), store.ErrTokenExpired)
	wantErr(t, "CheckToken of an unknown hash", st.CheckToken(ctx, []byte("nope"), t0), store.ErrTokenUnknown)
	must(t, st.RecordEnrollFailure(ctx, store.EnrollFailure{Source: "192.0.2.7", At: t0, Reason: "unknown"}))
	ok, err := st.EKApproved(ctx, "ab")
	must(t, err)
	if ok {
		t.Error("EK approved before ApproveEK")
	}
	added, err := st.ApproveEK(ctx, store.ApprovedEK{Fingerprint: "ab", ApprovedBy: "op-1", ApprovedAt: t0, Note: "庁舎 3F"})
	must(t, err)
	again, err := st.ApproveEK(ctx, store.ApprovedEK{Fingerprint: "ab", ApprovedBy: "op-2", ApprovedAt: t0.Add(time.Hour)})
	must(t, err)
	if !added || again {
		t.Errorf("ApproveEK added %v, again %v; want true, false", added, again)
	}
	ok, err = st.EKApproved(ctx, "ab")
	must(t, err)
	eks, err := st.ListApprovedEKs(ctx)
	must(t, err)
	if !ok || len(eks) != 1 || eks[0].ApprovedBy != "op-1" || !eks[0].ApprovedAt.Equal(us(t0)) || eks[0].Note != "庁舎 3F" {
		t.Errorf("approved EKs: %v %+v", ok, eks)
	}
}

func testEvents(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	a := f.enroll("m-a", "a", t0).Device
	b := f.enroll("m-b", "b", t0).Device
	res := f.ingestOK(
		report(a, t0, store.VerdictCompliant, nil, event("1"), event("2"), event("1")), // duplicate in one report
		report(a, t0, store.VerdictCompliant, nil, event("2"), event("3")),             // duplicate across reports of a batch
		report(b, t0, store.VerdictCompliant, nil, event("1"), event("2")),             // same IDs, other device
	)
	got := []int{res[0].NewEvents, res[1].NewEvents, res[2].NewEvents}
	diff(t, "NewEvents of first batch", []int{2, 1, 2}, got)
	res = f.ingestOK(
		report(a, t0.Add(time.Second), store.VerdictCompliant, nil, event("3"), event("4")), // across batches
		report(b, t0.Add(time.Second), store.VerdictCompliant, nil, event("1")),
	)
	diff(t, "NewEvents of second batch", []int{1, 0}, []int{res[0].NewEvents, res[1].NewEvents})
	for id, want := range map[string]int64{a.ID: 4, b.ID: 2, "": 6, "nope": 0} {
		if n := f.events(id); n != want {
			t.Errorf("CountEvents(%q) = %d, want %d", id, n, want)
		}
	}
	evs, err := st.ListEvents(t.Context(), store.EventFilter{DeviceID: a.ID})
	must(t, err)
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.Event.GetId())
		if e.DeviceID != a.ID {
			t.Errorf("event of %s listed for %s", e.DeviceID, a.ID)
		}
	}
	diff(t, "events of a, newest first", []string{"4", "3", "2", "1"}, ids)
	diff(t, "stored event", event("4"), evs[0].Event)
	if !evs[0].ReceivedAt.Equal(us(t0.Add(time.Second))) || evs[3].ReceivedAt.Location() != time.UTC {
		t.Errorf("ReceivedAt = %v, want %v in UTC", evs[0].ReceivedAt, us(t0.Add(time.Second)))
	}
	// The first copy stays: a duplicate never overwrites.
	if !evs[3].ReceivedAt.Equal(us(t0)) {
		t.Errorf("event 1 received at %v, want first delivery %v", evs[3].ReceivedAt, us(t0))
	}
}

func testListEventsPaging(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	a := f.enroll("m-a", "a", t0).Device
	b := f.enroll("m-b", "b", t0).Device
	for i := range 5 {
		f.ingestOK(
			report(a, t0, store.VerdictCompliant, nil, event(fmt.Sprint("a", i))),
			report(b, t0, store.VerdictCompliant, nil, event(fmt.Sprint("b", i))),
		)
	}
	var all []string
	var before int64
	for {
		page, err := st.ListEvents(t.Context(), store.EventFilter{BeforeSeq: before, Limit: 3})
		must(t, err)
		if len(page) == 0 {
			break
		}
		for i, e := range page {
			if before != 0 && e.Seq >= before || i > 0 && e.Seq >= page[i-1].Seq {
				t.Fatalf("seq %d out of order (before %d)", e.Seq, before)
			}
			all = append(all, e.Event.GetId())
		}
		before = page[len(page)-1].Seq
	}
	diff(t, "all events, newest first", []string{"b4", "a4", "b3", "a3", "b2", "a2", "b1", "a1", "b0", "a0"}, all)
}

func (f *fixture) controls(id string) map[string]string {
	f.t.Helper()
	m := map[string]string{}
	for _, r := range f.device(id).Controls {
		m[r.GetStatus().GetControl()] = r.GetStatus().GetState().String() + " since " + r.GetSince().AsTime().Format(time.RFC3339Nano)
	}
	return m
}

func testControlHistory(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m", "h", t0).Device
	const (
		enforced = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		monitor  = mamoriv1.ControlState_CONTROL_STATE_MONITORING
		failed   = mamoriv1.ControlState_CONTROL_STATE_FAILED
		none     = mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED
	)
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	stamp := func(t time.Time) string { return us(t).Format(time.RFC3339Nano) }

	r := f.ingestOK(report(d, t1, store.VerdictCompliant, []*mamoriv1.ControlStatus{
		status("media", enforced, "blocked"), status("isolation", monitor, "watching"),
	}))
	diff(t, "changes of first report", []string{"isolation", "media"}, r[0].Changes)

	r = f.ingestOK(report(d, t2, store.VerdictCompliant, []*mamoriv1.ControlStatus{
		status("media", enforced, "still blocked"), status("isolation", monitor, "watching"),
	}))
	diff(t, "changes of an unchanged report", []string(nil), r[0].Changes)
	got := f.device(d.ID)
	if got.Controls[1].GetStatus().GetDetail() != "still blocked" {
		t.Errorf("detail not updated: %v", got.Controls[1].GetStatus())
	}
	diff(t, "controls while unchanged", map[string]string{
		"media": "CONTROL_STATE_ENFORCED since " + stamp(t1), "isolation": "CONTROL_STATE_MONITORING since " + stamp(t1),
	}, f.controls(d.ID))

	// A report without isolation keeps its record; login-mfa is new. The
	// media detail comes as a catalogue message with its parts, kept in
	// the history; login-mfa's is too large to keep (English only).
	mediaFailed := status("media", failed, "udev rule missing")
	mediaFailed.DetailId, mediaFailed.DetailArgs = "detail.problems", []string{"2", "udev rule missing; x"}
	mediaFailed.DetailParts = []*mamoriv1.DetailPart{{Id: "detail.media.udev-missing", Args: []string{"/etc/udev/rules.d/60-mamori.rules"}},
		{Id: "detail.x"}}
	mfaOn := status("login-mfa", enforced, "totp")
	mfaOn.DetailId, mfaOn.DetailArgs = "detail.loginmfa.big", []string{strings.Repeat("語", 3000)}
	r = f.ingestOK(report(d, t3, store.VerdictNoncompliant, []*mamoriv1.ControlStatus{mediaFailed, mfaOn}))
	diff(t, "changes of third report", []string{"login-mfa", "media"}, r[0].Changes)
	diff(t, "controls after a change", map[string]string{
		"media":     "CONTROL_STATE_FAILED since " + stamp(t3),
		"isolation": "CONTROL_STATE_MONITORING since " + stamp(t1),
		"login-mfa": "CONTROL_STATE_ENFORCED since " + stamp(t3),
	}, f.controls(d.ID))
	var names []string
	for _, c := range f.device(d.ID).Controls {
		names = append(names, c.GetStatus().GetControl())
	}
	diff(t, "controls ordered by name", []string{"isolation", "login-mfa", "media"}, names)
	diff(t, "stored status", mediaFailed, f.device(d.ID).Controls[2].GetStatus())

	h, err := st.ControlHistory(t.Context(), d.ID, 0)
	must(t, err)
	slices.SortStableFunc(h[:2], func(a, b store.HistoryEntry) int { return strings.Compare(a.Control, b.Control) })
	slices.SortStableFunc(h[2:], func(a, b store.HistoryEntry) int { return strings.Compare(a.Control, b.Control) })
	diff(t, "history, newest first", []store.HistoryEntry{
		{DeviceID: d.ID, Control: "login-mfa", From: none, To: enforced, Detail: "totp", At: us(t3)},
		{DeviceID: d.ID, Control: "media", From: enforced, To: failed, Detail: "udev rule missing", At: us(t3),
			DetailMsg: &mamoriv1.ControlStatus{DetailId: mediaFailed.DetailId, DetailArgs: mediaFailed.DetailArgs, DetailParts: mediaFailed.DetailParts}},
		{DeviceID: d.ID, Control: "isolation", From: none, To: monitor, Detail: "watching", At: us(t1)},
		{DeviceID: d.ID, Control: "media", From: none, To: enforced, Detail: "blocked", At: us(t1)},
	}, h)
	h, err = st.ControlHistory(t.Context(), d.ID, 1)
	must(t, err)
	if len(h) != 1 {
		t.Errorf("ControlHistory limit 1 returned %d entries", len(h))
	}
}

func testVerdict(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m", "h", t0).Device
	steps := []struct {
		verdict      string
		reasons      []string
		wantFailing  time.Time
		wantLastSeen time.Time
	}{
		{store.VerdictCompliant, nil, time.Time{}, t0.Add(1 * time.Minute)},
		{store.VerdictNoncompliant, []string{"media: not enforced"}, t0.Add(2 * time.Minute), t0.Add(2 * time.Minute)},
		{store.VerdictNoncompliant, []string{"media: not enforced", "mfa: off"}, t0.Add(2 * time.Minute), t0.Add(3 * time.Minute)},
		{store.VerdictCompliant, nil, time.Time{}, t0.Add(4 * time.Minute)},
		{store.VerdictNoncompliant, []string{"again"}, t0.Add(5 * time.Minute), t0.Add(5 * time.Minute)},
	}
	for i, s := range steps {
		in := report(d, s.wantLastSeen, s.verdict, nil)
		in.Reasons = s.reasons
		in.PolicyVersion = int64(10 + i)
		f.ingestOK(in)
		got := f.device(d.ID)
		type view struct {
			Verdict                string
			Reasons                []string
			FailingSince, LastSeen time.Time
			PolicyVersion          int64
		}
		var wantFailing time.Time
		if !s.wantFailing.IsZero() {
			wantFailing = us(s.wantFailing)
		}
		diff(t, fmt.Sprintf("step %d", i),
			view{s.verdict, s.reasons, wantFailing, us(s.wantLastSeen), int64(10 + i)},
			view{got.Verdict, got.Reasons, got.FailingSince, got.LastSeen, got.PolicyVersion})
	}
	// last_seen follows the report even when the clock went back.
	f.ingestOK(report(d, t0, store.VerdictNoncompliant, nil))
	if got := f.device(d.ID).LastSeen; !got.Equal(us(t0)) {
		t.Errorf("LastSeen = %v, want %v", got, us(t0))
	}
}

func testFacts(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m", "old-name", t0).Device
	f.ingestOK(report(d, t0, store.VerdictCompliant, nil))
	diff(t, "facts after a report without facts", facts("m", "old-name"), f.device(d.ID).Facts)
	in := report(d, t0, store.VerdictCompliant, nil)
	in.Facts = facts("m", "new-name")
	in.Facts.Kernel = "6.12.9"
	f.ingestOK(in)
	diff(t, "facts after a report with facts", in.Facts, f.device(d.ID).Facts)
	got, err := st.FindDevice(t.Context(), "new-name")
	if err != nil || got.ID != d.ID {
		t.Errorf("FindDevice(new hostname) = %s, %v; want %s", got.ID, err, d.ID)
	}
	if _, err := st.FindDevice(t.Context(), "old-name"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FindDevice(old hostname) err = %v, want ErrNotFound", err)
	}

	// Facts that name another machine are refused, and nothing is written.
	other := f.enroll("m-other", "other", t0).Device
	before := f.device(d.ID)
	forged := report(d, t0.Add(time.Minute), store.VerdictCompliant, nil, event("forged-1"))
	forged.Facts = facts("m-other", "other")
	wantErr(t, "report naming another machine", f.ingest(forged)[0].Err, store.ErrWrongDevice)
	diff(t, "device after a refused report", before, f.device(d.ID))
	if n := f.events(d.ID) + f.events(other.ID); n != 0 {
		t.Errorf("a refused report stored %d events", n)
	}
}
