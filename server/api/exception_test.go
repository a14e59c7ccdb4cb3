package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestExceptionRPCs: roles, validation of malformed and oversized input,
// the audit record, and the exception in the device's effective policy
// (sent on the next report because the digest differs, not the version).
func TestExceptionRPCs(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	officer := h.Admin(t, h.Operator(t, "suzuki", auth.RoleOfficer))
	helpdesk := h.Admin(t, h.Operator(t, "yamada", auth.RoleHelpdesk))
	dev := enroll(t, h, "pc-exc")
	// Media in enforce mode, so the exception lands in its settings.
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.Policy
	p.Controls[policy.ControlMedia] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "enforce"}); err != nil {
		t.Fatal(err)
	}
	first, err := dev.Client.Report(ctx, &mamoriv1.ReportRequest{PolicyVersion: 0})
	if err != nil || first.Policy == nil || first.Policy.Digest == "" {
		t.Fatalf("first report: %v %v", first, err)
	}
	held := first.Policy
	again, err := dev.Client.Report(ctx, &mamoriv1.ReportRequest{PolicyVersion: held.Version, PolicyDigest: held.Digest})
	if err != nil || again.Policy != nil {
		t.Fatalf("unchanged policy resent: %v %v", again.GetPolicy(), err)
	}

	expires := timestamppb.New(h.Clock.Now().Add(24 * time.Hour))
	good := &mamoriv1.CreateExceptionRequest{Usb: "0781:5581:4C530001231120115142", User: "tanaka", Device: "pc-exc",
		Reason: "議会資料の受け渡し", ExpiresAt: expires}
	_, err = helpdesk.CreateException(ctx, good)
	wantCode(t, err, codes.PermissionDenied)

	for name, mod := range map[string]func(r *mamoriv1.CreateExceptionRequest){
		"wildcard serial":    func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:*" },
		"not hex":            func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "zz81:5581:SER" },
		"script in serial":   func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:<script> alert(1)</script>" },
		"serial with space":  func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:A B" },
		"oversized usb":      func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:" + strings.Repeat("A", 5000) },
		"bad user":           func(r *mamoriv1.CreateExceptionRequest) { r.User = "tanaka; rm -rf" },
		"no reason":          func(r *mamoriv1.CreateExceptionRequest) { r.Reason = " " },
		"oversized reason":   func(r *mamoriv1.CreateExceptionRequest) { r.Reason = strings.Repeat("理", 1000) },
		"no expiry":          func(r *mamoriv1.CreateExceptionRequest) { r.ExpiresAt = nil },
		"expiry in the past": func(r *mamoriv1.CreateExceptionRequest) { r.ExpiresAt = timestamppb.New(h.Clock.Now().Add(-time.Hour)) },
		"expiry too far": func(r *mamoriv1.CreateExceptionRequest) {
			r.ExpiresAt = timestamppb.New(h.Clock.Now().Add(91 * 24 * time.Hour))
		},
		"invalid timestamp":  func(r *mamoriv1.CreateExceptionRequest) { r.ExpiresAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -5} },
		"device and group":   func(r *mamoriv1.CreateExceptionRequest) { r.Group = "市民課" },
		"neither":            func(r *mamoriv1.CreateExceptionRequest) { r.Device = "" },
		"control char group": func(r *mamoriv1.CreateExceptionRequest) { r.Device, r.Group = "", "市民\n課" },
		"non-ASCII serial":   func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:シリアル" },
	} {
		t.Run(name, func(t *testing.T) {
			r := proto.Clone(good).(*mamoriv1.CreateExceptionRequest)
			mod(r)
			_, err := officer.CreateException(ctx, r)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	r := proto.Clone(good).(*mamoriv1.CreateExceptionRequest)
	r.Device = "no-such-terminal"
	_, err = officer.CreateException(ctx, r)
	wantCode(t, err, codes.NotFound)

	created, err := officer.CreateException(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	e := created.Exception
	if e.DeviceId != dev.ID || e.Usb != "0781:5581:4C530001231120115142" || e.CreatedBy == "" {
		t.Fatalf("created %v", e)
	}
	// The next report gets the effective policy: same version, new digest,
	// the exception in the media settings.
	next, err := dev.Client.Report(ctx, &mamoriv1.ReportRequest{PolicyVersion: held.Version, PolicyDigest: held.Digest})
	if err != nil || next.Policy == nil {
		t.Fatalf("policy not resent after an exception: %v %v", next.GetPolicy(), err)
	}
	if next.Policy.Version != held.Version || next.Policy.Digest == held.Digest ||
		!strings.Contains(next.Policy.Controls[policy.ControlMedia].Settings[policy.SettingExceptions], e.Id+" 0781:5581:4C530001231120115142") ||
		len(next.Policy.Exceptions) != 1 || len(next.Policy.Groups) != 0 {
		t.Fatalf("effective policy %v", next.Policy)
	}
	// An upgraded agent still holding a digest-less policy says "-" and
	// gets the effective policy although the version is the same.
	if dash, err := dev.Client.Report(ctx, &mamoriv1.ReportRequest{PolicyVersion: held.Version, PolicyDigest: "-"}); err != nil || dash.Policy == nil {
		t.Fatalf("digest \"-\": %v %v", dash.GetPolicy(), err)
	}
	// An old agent (no digest, same version) is not sent anything.
	old, err := dev.Client.Report(ctx, &mamoriv1.ReportRequest{PolicyVersion: held.Version})
	if err != nil || old.Policy != nil {
		t.Fatalf("old agent: %v %v", old.GetPolicy(), err)
	}

	list, err := helpdesk.ListExceptions(ctx, &mamoriv1.ListExceptionsRequest{Device: "pc-exc"})
	if err != nil || len(list.Exceptions) != 1 || list.Exceptions[0].Id != e.Id {
		t.Fatalf("helpdesk list: %v %v", list, err)
	}
	_, err = helpdesk.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: e.Id, Reason: "x"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = officer.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: e.Id})
	wantCode(t, err, codes.InvalidArgument)
	_, err = officer.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: "ghost", Reason: "x"})
	wantCode(t, err, codes.NotFound)
	if _, err := officer.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: e.Id, Reason: "用件終了"}); err != nil {
		t.Fatal(err)
	}
	_, err = officer.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: e.Id, Reason: "again"})
	wantCode(t, err, codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists)
	list, err = helpdesk.ListExceptions(ctx, &mamoriv1.ListExceptionsRequest{Device: dev.ID})
	if err != nil || len(list.Exceptions) != 0 {
		t.Fatalf("active after revoke: %v %v", list, err)
	}
	list, err = helpdesk.ListExceptions(ctx, &mamoriv1.ListExceptionsRequest{All: true})
	if err != nil || len(list.Exceptions) != 1 || list.Exceptions[0].RevokeReason != "用件終了" {
		t.Fatalf("all: %v %v", list, err)
	}
	audit, err := admin.ListAudit(ctx, &mamoriv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range audit.Records {
		if strings.HasPrefix(a.Action, "exception.") {
			actions = append(actions, a.Action+" "+a.Target)
		}
	}
	if strings.Join(actions, ",") != "exception.create "+e.Id+",exception.revoke "+e.Id {
		t.Errorf("audit: %v", actions)
	}
}

// TestGroupPolicy: a group override reaches only that group's devices and
// compliance is judged against it; a stored document with a hand-made
// exceptions setting is refused.
func TestGroupPolicy(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	tok, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Group: "税務課"})
	if err != nil {
		t.Fatal(err)
	}
	tax, err := h.Enroll(t, tok.Token, servertest.Facts("pc-tax", "machine-tax"))
	if err != nil {
		t.Fatal(err)
	}
	plain := enroll(t, h, "pc-plain")
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.Policy
	p.Groups = map[string]*mamoriv1.GroupPolicy{"税務課": {
		Controls:       map[string]*mamoriv1.ControlPolicy{"isolation": {Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true}},
		ReportInterval: durationpb.New(30 * time.Second),
	}}
	bad := policy.Clone(p)
	bad.Controls[policy.ControlMedia].Settings = map[string]string{policy.SettingExceptions: "x"}
	_, err = admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: bad, ExpectedVersion: p.Version, Reason: "x"})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "税務課は隔離必須"}); err != nil {
		t.Fatal(err)
	}
	got, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil || len(got.Policy.Groups) != 1 {
		t.Fatalf("stored document: %v %v", got, err)
	}
	statuses := []*mamoriv1.ControlStatus{enforced("agent")}
	rt, err := tax.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: statuses})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := plain.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: statuses})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Policy.Group != "税務課" || !rt.Policy.Controls["isolation"].Required || rt.NextReportIn.AsDuration() != 30*time.Second {
		t.Errorf("税務課 effective policy %v next %v", rt.Policy, rt.NextReportIn)
	}
	if rp.Policy.Group != "" || rp.Policy.Controls["isolation"].Required || rt.Policy.Digest == rp.Policy.Digest {
		t.Errorf("plain effective policy %v", rp.Policy)
	}
	if c := deviceState(t, h, tax.ID); c.Compliance != mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT || len(c.Reasons) != 1 || !strings.HasPrefix(c.Reasons[0], "isolation") {
		t.Errorf("税務課 device: %v %v", c.Compliance, c.Reasons)
	}
	if c := deviceState(t, h, plain.ID); c.Compliance != mamoriv1.Compliance_COMPLIANCE_COMPLIANT {
		t.Errorf("plain device: %v %v", c.Compliance, c.Reasons)
	}
}

// TestLedgerRPCs: officer imports, helpdesk reads; a bad file is refused
// whole with row numbers; an oversized one is refused.
func TestLedgerRPCs(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	officer := h.Admin(t, h.Operator(t, "suzuki", auth.RoleOfficer))
	helpdesk := h.Admin(t, h.Operator(t, "yamada", auth.RoleHelpdesk))
	enroll(t, h, "pc-001")
	enroll(t, h, "pc-stray")
	csv := []byte("資産番号,ホスト名,製造番号,所属,設置場所,備考\nA-001,pc-001,SN1,市民課,本庁舎2F,\nA-002,pc-002,SN2,市民課,本庁舎2F,\n")
	_, err := helpdesk.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: csv, Reason: "x"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = officer.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: csv})
	wantCode(t, err, codes.InvalidArgument)
	_, err = officer.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: make([]byte, 3<<20), Reason: "x"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = officer.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: []byte("資産番号,ホスト名\nA,pc-1\nA,pc-2\n"), Reason: "x"})
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "row 3") {
		t.Errorf("error without the row: %v", err)
	}
	res, err := officer.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: csv, Reason: "2026年度台帳"})
	if err != nil || res.Rows != 2 {
		t.Fatalf("import: %v %v", res, err)
	}
	l, err := helpdesk.ListLedger(ctx, &mamoriv1.ListLedgerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Rows {
		got = append(got, r.Hostname+"="+r.State)
	}
	if strings.Join(got, ",") != "pc-001=offline,pc-002=never_enrolled,pc-stray=not_in_ledger" {
		t.Errorf("ledger rows %v", got)
	}
}
