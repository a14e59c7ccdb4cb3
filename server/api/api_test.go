package api_test

import (
	"context"
	"crypto/tls"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

var ctx = context.Background()

func enforced(control string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: control, Mode: mamoriv1.Mode_MODE_ENFORCE,
		State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ObservedAt: timestamppb.Now()}
}

func event(kind string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: "media", Kind: kind,
		Attributes: map[string]string{"serial": "AA01"}}
}

func wantCode(t *testing.T, err error, want codes.Code, alsoOK ...codes.Code) {
	t.Helper()
	got := status.Code(err)
	if got == want || slices.Contains(alsoOK, got) {
		return
	}
	t.Fatalf("got %v (%v), want %v", got, err, want)
}

func enroll(t *testing.T, h *servertest.Harness, host string) *servertest.Device {
	t.Helper()
	d, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts(host, "machine-"+host))
	if err != nil {
		t.Fatalf("enroll %s: %v", host, err)
	}
	return d
}

func deviceState(t *testing.T, h *servertest.Harness, id string) *mamoriv1.Device {
	t.Helper()
	resp, err := h.Admin(t, h.AdminToken).GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: id})
	if err != nil {
		t.Fatalf("get device: %v", err)
	}
	return resp.Device
}

func fleet(t *testing.T, h *servertest.Harness) *mamoriv1.FleetSummaryResponse {
	t.Helper()
	f, err := h.Admin(t, h.AdminToken).FleetSummary(ctx, &mamoriv1.FleetSummaryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestReportComplianceAndOffline(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testReportComplianceAndOffline(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testReportComplianceAndOffline(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

func testReportComplianceAndOffline(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	d := enroll(t, h, "pc-001")
	if got := deviceState(t, h, d.ID).Compliance; got != mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED {
		t.Fatalf("before a report: %v", got)
	}
	// The default policy requires the agent self-check only.
	ev := event("usb_blocked")
	resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{
		Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, Events: []*mamoriv1.Event{ev},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.AckedEventIds) != 1 || resp.AckedEventIds[0] != ev.Id {
		t.Fatalf("acked %v, want [%s]", resp.AckedEventIds, ev.Id)
	}
	if resp.Policy == nil || resp.Policy.Version != 1 {
		t.Fatalf("first report must carry the policy, got %v", resp.Policy)
	}
	dev := deviceState(t, h, "pc-001") // by hostname
	if dev.Compliance != mamoriv1.Compliance_COMPLIANCE_COMPLIANT {
		t.Fatalf("compliance %v reasons %v", dev.Compliance, dev.Reasons)
	}

	// A failing required control makes it NONCOMPLIANT, with the reason.
	degraded := &mamoriv1.ControlStatus{Control: "agent", Mode: mamoriv1.Mode_MODE_ENFORCE,
		State: mamoriv1.ControlState_CONTROL_STATE_DEGRADED, Detail: "clock skew 300s"}
	h.Clock.Advance(time.Minute)
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{degraded}, PolicyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	dev = deviceState(t, h, d.ID)
	if dev.Compliance != mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT || len(dev.Reasons) != 1 ||
		!strings.Contains(dev.Reasons[0], "DEGRADED") || !strings.Contains(dev.Reasons[0], "clock skew") {
		t.Fatalf("compliance %v reasons %q", dev.Compliance, dev.Reasons)
	}
	if dev.FailingSince == nil || !dev.FailingSince.AsTime().Equal(h.Clock.Now()) {
		t.Fatalf("failing since %v, want %v", dev.FailingSince, h.Clock.Now())
	}

	// Silence beyond the max report age: OFFLINE, which is not failing.
	h.Clock.Advance(policy.MaxReportAge(policy.Default()) + time.Second)
	dev = deviceState(t, h, d.ID)
	if dev.Compliance != mamoriv1.Compliance_COMPLIANCE_OFFLINE || dev.OfflineSince == nil {
		t.Fatalf("after silence: %v offline since %v", dev.Compliance, dev.OfflineSince)
	}
	if f := fleet(t, h); f.Offline != 1 || f.Total != 1 || f.Noncompliant != 0 {
		t.Fatalf("fleet %v", f)
	}
}

func TestEnrollRefusedWritesNothing(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	expiring := h.Token(t, 5, time.Hour)
	once := h.Token(t, 1, 0)
	if _, err := h.Enroll(t, once, servertest.Facts("pc-a", "machine-a")); err != nil {
		t.Fatal(err)
	}
	h.Clock.Advance(2 * time.Hour)
	cases := []struct {
		name  string
		token string
		facts *mamoriv1.DeviceFacts
		code  codes.Code
	}{
		{"unknown token", string(auth.NewToken(auth.EnrollmentTokenPrefix)), servertest.Facts("pc-b", "machine-b"), codes.PermissionDenied},
		{"malformed token", "letmein", servertest.Facts("pc-b", "machine-b"), codes.PermissionDenied},
		{"operator token as enrolment token", h.AdminToken, servertest.Facts("pc-b", "machine-b"), codes.PermissionDenied},
		{"expired token", expiring, servertest.Facts("pc-b", "machine-b"), codes.PermissionDenied},
		{"used-up token", once, servertest.Facts("pc-b", "machine-b"), codes.PermissionDenied},
		{"no machine id", h.Token(t, 1, 0), servertest.Facts("pc-b", ""), codes.InvalidArgument},
		{"huge hostname", h.Token(t, 1, 0), servertest.Facts(strings.Repeat("x", 300), "machine-b"), codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Enroll(t, tc.token, tc.facts)
			wantCode(t, err, tc.code)
		})
	}
	if f := fleet(t, h); f.Total != 1 {
		t.Fatalf("refused enrolments wrote devices: total %d", f.Total)
	}
}

// Re-enrolment with the proof of the current key keeps the record (it
// used to be enough to send the same machine ID: see
// TestReenrolClaimedMachineIDMakesClone).
func TestReenrolSameMachineKeepsRecord(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tok := h.Token(t, 2, 0)
	first, err := h.Enroll(t, tok, servertest.Facts("pc-r", "machine-r"))
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := h.Reenroll(t, tok, servertest.Facts("pc-r", "machine-r"), first)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Fatalf("re-enrolment made a new device: %s then %s", first.ID, second.ID)
	}
	if f := fleet(t, h); f.Total != 1 {
		t.Fatalf("total %d, want 1", f.Total)
	}
	// The first certificate is superseded: a copied old identity stops working.
	_, err = first.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}})
	wantCode(t, err, codes.Unauthenticated)
	if _, err := second.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}); err != nil {
		t.Fatal(err)
	}
}

func TestTransportRefusals(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-t")
	report := &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}

	t.Run("plaintext client", func(t *testing.T) {
		cc, err := grpc.NewClient(h.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = mamoriv1.NewAgentServiceClient(cc).Report(c, report)
		if err == nil {
			t.Fatal("plaintext report accepted")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other, _, err := pki.LoadOrCreateCA(t.TempDir(), h.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		key, _ := pki.NewDeviceKey()
		csr, _ := pki.NewCSR(key, "evil")
		der, _, err := other.SignDeviceCSR(csr, d.ID, false, h.Clock.Now()) // same device ID, wrong CA
		if err != nil {
			t.Fatal(err)
		}
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), &cert, "localhost"))
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = mamoriv1.NewAgentServiceClient(cc).Report(c, report)
		if err == nil {
			t.Fatal("foreign certificate accepted")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
		_, err := mamoriv1.NewAgentServiceClient(cc).Report(ctx, report)
		wantCode(t, err, codes.Unauthenticated)
	})
	t.Run("operator token on agent call", func(t *testing.T) {
		cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"), grpc.WithPerRPCCredentials(servertest.Bearer(h.AdminToken)))
		_, err := mamoriv1.NewAgentServiceClient(cc).Report(ctx, report)
		wantCode(t, err, codes.Unauthenticated)
	})
	t.Run("device certificate on admin call", func(t *testing.T) {
		cc := h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), &d.Cert, "localhost"))
		_, err := mamoriv1.NewAdminServiceClient(cc).ListDevices(ctx, &mamoriv1.ListDevicesRequest{})
		wantCode(t, err, codes.Unauthenticated)
	})
	if dev := deviceState(t, h, d.ID); dev.LastSeen != nil {
		t.Fatalf("a refused call wrote last_seen %v", dev.LastSeen)
	}
}

func TestRevokedDeviceRefused(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-v")
	admin := h.Admin(t, h.AdminToken)
	_, err := admin.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID})
	wantCode(t, err, codes.InvalidArgument) // a reason is required
	if _, err := admin.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{
		Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, Events: []*mamoriv1.Event{event("usb_blocked")},
	})
	wantCode(t, err, codes.PermissionDenied)
	dev := deviceState(t, h, d.ID)
	if dev.Compliance != mamoriv1.Compliance_COMPLIANCE_REVOKED || dev.LastSeen != nil {
		t.Fatalf("revoked device: %v last seen %v", dev.Compliance, dev.LastSeen)
	}
	evs, err := admin.ListEvents(ctx, &mamoriv1.ListEventsRequest{DeviceId: d.ID})
	if err != nil || len(evs.Events) != 0 {
		t.Fatalf("events of a revoked device stored: %v %v", evs, err)
	}
}

func TestReportNamingAnotherDeviceRefused(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	a := enroll(t, h, "pc-a")
	b := enroll(t, h, "pc-b")
	// Device A sends facts that claim to be B's machine.
	_, err := a.Client.Report(ctx, &mamoriv1.ReportRequest{
		Facts: servertest.Facts("pc-b", "machine-pc-b"), Statuses: []*mamoriv1.ControlStatus{enforced("agent")},
	})
	wantCode(t, err, codes.PermissionDenied)
	for _, id := range []string{a.ID, b.ID} {
		if dev := deviceState(t, h, id); dev.LastSeen != nil {
			t.Fatalf("device %s written by a refused report", id)
		}
	}
}

func TestMalformedReports(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-m")
	manyEvents := make([]*mamoriv1.Event, 1001)
	for i := range manyEvents {
		manyEvents[i] = event("x")
	}
	bigAttrs := map[string]string{}
	for range 70 {
		bigAttrs[uuid.NewString()] = "v"
	}
	cases := []struct {
		name string
		req  *mamoriv1.ReportRequest
		code codes.Code
	}{
		{"event id not a UUID", &mamoriv1.ReportRequest{Events: []*mamoriv1.Event{{Id: "1; DROP TABLE events", Time: timestamppb.Now(), Kind: "x"}}}, codes.InvalidArgument},
		{"event without time", &mamoriv1.ReportRequest{Events: []*mamoriv1.Event{{Id: uuid.NewString(), Kind: "x"}}}, codes.InvalidArgument},
		{"unknown state", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 99}}}, codes.InvalidArgument},
		{"unspecified state", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent"}}}, codes.InvalidArgument},
		{"control twice", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent"), enforced("agent")}}, codes.InvalidArgument},
		{"too many events", &mamoriv1.ReportRequest{Events: manyEvents}, codes.InvalidArgument},
		{"too many attributes", &mamoriv1.ReportRequest{Events: []*mamoriv1.Event{{Id: uuid.NewString(), Time: timestamppb.Now(), Kind: "x", Attributes: bigAttrs}}}, codes.InvalidArgument},
		{"detail too long", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, Detail: strings.Repeat("x", 5000)}}}, codes.InvalidArgument},
		{"over-sized message", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, Detail: strings.Repeat("x", 5<<20)}}}, codes.ResourceExhausted},
		{"detail_id too long", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, DetailId: "detail." + strings.Repeat("x", 300)}}}, codes.InvalidArgument},
		{"too many detail_args", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, DetailId: "detail.x", DetailArgs: make([]string, 9)}}}, codes.InvalidArgument},
		{"detail_arg too long", &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent", State: 1, DetailId: "detail.x", DetailArgs: []string{"a", strings.Repeat("x", 5000)}}}}, codes.InvalidArgument},
		{"witness: seq 0", &mamoriv1.ReportRequest{WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Head: make([]byte, 32), Signature: []byte{1}}}, codes.InvalidArgument},
		{"witness: negative seq", &mamoriv1.ReportRequest{WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Seq: -5, Head: make([]byte, 32), Signature: []byte{1}}}, codes.InvalidArgument},
		{"witness: short head", &mamoriv1.ReportRequest{WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Seq: 1, Head: make([]byte, 31), Signature: []byte{1}}}, codes.InvalidArgument},
		{"witness: no signature", &mamoriv1.ReportRequest{WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Seq: 1, Head: make([]byte, 32)}}, codes.InvalidArgument},
		{"witness: huge signature", &mamoriv1.ReportRequest{WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Seq: 1, Head: make([]byte, 32), Signature: make([]byte, 513)}}, codes.InvalidArgument},
		{"witness in a differential report", &mamoriv1.ReportRequest{BaseDigest: make([]byte, 32), StateDigest: make([]byte, 32),
			WitnessedCheckpoint: &mamoriv1.AuditCheckpoint{Seq: 1, Head: make([]byte, 32), Signature: []byte{1}}}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Client.Report(ctx, tc.req, grpc.MaxCallSendMsgSize(16<<20))
			wantCode(t, err, tc.code)
		})
	}
	if dev := deviceState(t, h, d.ID); dev.LastSeen != nil {
		t.Fatalf("a malformed report wrote last_seen")
	}
}

func TestRoles(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-h")
	helpdesk := h.Admin(t, h.Operator(t, "yamada", auth.RoleHelpdesk))
	officer := h.Admin(t, h.Operator(t, "suzuki", auth.RoleOfficer))

	if _, err := helpdesk.ListDevices(ctx, &mamoriv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("helpdesk cannot read: %v", err)
	}
	_, err := helpdesk.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID, Reason: "x"})
	wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(status.Convert(err).Message(), "officer") {
		t.Fatalf("refusal does not say which role is needed: %v", err)
	}
	pol, err := helpdesk.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = helpdesk.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: pol.Policy, ExpectedVersion: pol.Policy.Version, Reason: "x"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = helpdesk.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{})
	wantCode(t, err, codes.PermissionDenied)

	// An officer may; a stale expected version is refused.
	p := pol.Policy
	p.ReportInterval = durationpb.New(30 * time.Second)
	set, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "faster reports"})
	if err != nil || set.Policy.Version != 2 {
		t.Fatalf("set policy: %v %v", set, err)
	}
	_, err = officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: 1, Reason: "again"})
	wantCode(t, err, codes.Aborted)
	bad := policy.Clone(p)
	bad.ReportInterval = durationpb.New(time.Millisecond)
	_, err = officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: bad, ExpectedVersion: 2, Reason: "x"})
	wantCode(t, err, codes.InvalidArgument)

	for name, tok := range map[string]string{
		"no token": "", "garbage": "Bearer xyz", "unknown": string(auth.NewToken(auth.OperatorTokenPrefix)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.Admin(t, strings.TrimPrefix(tok, "Bearer ")).FleetSummary(ctx, &mamoriv1.FleetSummaryRequest{})
			wantCode(t, err, codes.Unauthenticated)
		})
	}
}

func TestDuplicateDeliveryStoredOnce(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-d")
	evs := []*mamoriv1.Event{event("a"), event("b"), event("c")}
	for range 3 {
		resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.AckedEventIds) != 3 {
			t.Fatalf("acked %d", len(resp.AckedEventIds))
		}
	}
	got, err := h.Admin(t, h.AdminToken).ListEvents(ctx, &mamoriv1.ListEventsRequest{DeviceId: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 3 {
		t.Fatalf("stored %d events, want 3", len(got.Events))
	}
}

func TestAdminHostileInput(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	long := strings.Repeat("x", 300)
	cases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"list: unknown compliance filter", func() error {
			_, err := admin.ListDevices(ctx, &mamoriv1.ListDevicesRequest{Compliance: 42})
			return err
		}, codes.InvalidArgument},
		{"list: huge page token", func() error {
			_, err := admin.ListDevices(ctx, &mamoriv1.ListDevicesRequest{PageToken: long})
			return err
		}, codes.InvalidArgument},
		{"get: empty", func() error {
			_, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "  "})
			return err
		}, codes.InvalidArgument},
		{"get: huge", func() error {
			_, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: long})
			return err
		}, codes.InvalidArgument},
		{"get: unknown", func() error {
			_, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "' OR 1=1 --"})
			return err
		}, codes.NotFound},
		{"events: forged page token", func() error {
			_, err := admin.ListEvents(ctx, &mamoriv1.ListEventsRequest{PageToken: "-5"})
			return err
		}, codes.InvalidArgument},
		{"token: negative uses", func() error {
			_, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: -1})
			return err
		}, codes.InvalidArgument},
		{"token: too many uses", func() error {
			_, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 1 << 30})
			return err
		}, codes.InvalidArgument},
		{"token: ttl of a century", func() error {
			_, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Ttl: durationpb.New(100 * 365 * 24 * time.Hour)})
			return err
		}, codes.InvalidArgument},
		{"token: invalid ttl", func() error {
			_, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}})
			return err
		}, codes.InvalidArgument},
		{"revoke: unknown device", func() error {
			_, err := admin.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: "nope", Reason: "x"})
			return err
		}, codes.NotFound},
		{"revoke: huge reason", func() error {
			_, err := admin.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: "nope", Reason: strings.Repeat("理", 400)})
			return err
		}, codes.InvalidArgument},
		{"set policy: nil", func() error {
			_, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Reason: "x", ExpectedVersion: 1})
			return err
		}, codes.InvalidArgument},
		{"set policy: no reason", func() error {
			_, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: policy.Default(), ExpectedVersion: 1})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code) })
	}
	if f := fleet(t, h); f.Total != 0 || f.PolicyVersion != 1 {
		t.Fatalf("hostile calls changed state: %v", f)
	}
}

// TestWitnessedCheckpointForged: a well-formed checkpoint not signed by
// this server's CA is ignored and counted; the report is stored, and the
// answer carries the server's newest checkpoint once there is one.
func TestWitnessedCheckpointForged(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-w")
	forged := &mamoriv1.AuditCheckpoint{Seq: 1 << 40, Head: make([]byte, 32), Signature: make([]byte, 70)}
	resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, WitnessedCheckpoint: forged})
	if err != nil {
		t.Fatal(err)
	}
	if dev := deviceState(t, h, d.ID); dev.LastSeen == nil {
		t.Fatal("the report with a forged witness was not stored")
	}
	var m strings.Builder
	h.Srv.WriteMetrics(&m)
	if !strings.Contains(m.String(), "mamori_audit_witness_unsigned_total 1\n") || !strings.Contains(m.String(), "mamori_audit_witness_conflicts_total 0\n") {
		t.Fatalf("metrics:\n%s", m.String())
	}
	// The forged copy claims a seq far ahead: nothing newer to hand out.
	if resp.AuditCheckpoint != nil {
		t.Fatalf("checkpoint %v handed to a terminal claiming seq %d", resp.AuditCheckpoint, forged.Seq)
	}
	// An export signs the head; the next full report gets it.
	if _, err := h.Admin(t, h.AdminToken).ListAudit(ctx, &mamoriv1.ListAuditRequest{PageSize: 1000}); err != nil {
		t.Fatal(err)
	}
	resp, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}})
	if err != nil {
		t.Fatal(err)
	}
	cp := resp.GetAuditCheckpoint()
	if cp == nil || audit.CheckCA(h.Srv.CA().Cert)(audit.CheckpointMessage(cp.Seq, cp.Head), cp.Signature) != nil {
		t.Fatalf("checkpoint in the answer: %v", cp)
	}
}
