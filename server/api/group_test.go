package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestDeviceGroups: a token's group reaches the device it enrols; fleet
// counts split by group; only an officer moves a device, with a reason,
// and the move is in the audit log; hostile group names are refused.
func TestDeviceGroups(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	tok, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 2, Group: "市民課"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Enroll(t, tok.Token, servertest.Facts("pc-a", "machine-a"))
	if err != nil {
		t.Fatal(err)
	}
	b := enroll(t, h, "pc-b")
	if g := deviceState(t, h, a.ID).Group; g != "市民課" {
		t.Fatalf("device enrolled with a 市民課 token is in group %q", g)
	}
	f := fleet(t, h)
	if len(f.Groups) != 2 || f.Groups[0].Group != "" || f.Groups[0].Total != 1 || f.Groups[1].Group != "市民課" || f.Groups[1].NeverReported != 1 {
		t.Fatalf("fleet groups = %v", f.Groups)
	}
	list, err := admin.ListDevices(ctx, &mamoriv1.ListDevicesRequest{Group: "市民課"})
	if err != nil || len(list.Devices) != 1 || list.Devices[0].Id != a.ID {
		t.Fatalf("ListDevices group=市民課: %v %v", list, err)
	}

	helpdesk := h.Admin(t, h.Operator(t, "yamada", auth.RoleHelpdesk))
	_, err = helpdesk.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: b.ID, Group: "税務課", Reason: "move"})
	wantCode(t, err, codes.PermissionDenied)

	officer := h.Admin(t, h.Operator(t, "suzuki", auth.RoleOfficer))
	_, err = officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: b.ID, Group: "税務課"})
	wantCode(t, err, codes.InvalidArgument) // no reason
	for name, g := range map[string]string{
		"control character": "税務\n課",
		"too long":          strings.Repeat("課", 65),
		"leading space":     " 税務課",
		"bidi override":     "課\u202e税務",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: b.ID, Group: g, Reason: "x"})
			wantCode(t, err, codes.InvalidArgument)
			_, err = admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Group: g})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	_, err = officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: "no-such-device", Group: "x", Reason: "x"})
	wantCode(t, err, codes.NotFound)

	moved, err := officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: "pc-b", Group: "税務課", Reason: "異動"})
	if err != nil || moved.Device.Group != "税務課" {
		t.Fatalf("set group by hostname: %v %v", moved, err)
	}
	audit, err := admin.ListAudit(ctx, &mamoriv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The export appended a signed checkpoint first (issue 14 item 8):
	// the action is the record before it.
	n := len(audit.Records)
	if n < 2 || audit.Records[n-1].Action != "audit.checkpoint" {
		t.Fatalf("the export did not sign the head first: %v", audit.Records[n-1])
	}
	last := audit.Records[n-2]
	if last.Action != "device.group" || last.Target != b.ID || !strings.Contains(last.Detail, "税務課") || !strings.Contains(last.Detail, "異動") {
		t.Fatalf("last audit record = %v", last)
	}
}

// TestGroupMaxReportAgeInFleetCounts: a group with a longer max report age
// keeps its silent devices out of OFFLINE in the fleet counts and lists,
// as on each device's page.
func TestGroupMaxReportAgeInFleetCounts(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	tok, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 1, Group: "窓口"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Enroll(t, tok.Token, servertest.Facts("pc-madoguchi", "machine-madoguchi"))
	if err != nil {
		t.Fatal(err)
	}
	b := enroll(t, h, "pc-other")
	for _, d := range []*servertest.Device{a, b} {
		if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := pol.Policy
	p.Groups = map[string]*mamoriv1.GroupPolicy{"窓口": {MaxReportAge: durationpb.New(24 * time.Hour)}}
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "窓口端末は夜間停止"}); err != nil {
		t.Fatal(err)
	}
	h.Clock.Advance(policy.MaxReportAge(p) + time.Minute) // past the base age, within the group's

	if got := deviceState(t, h, a.ID).Compliance; got != mamoriv1.Compliance_COMPLIANCE_COMPLIANT {
		t.Fatalf("device page of the group's device: %v", got)
	}
	f := fleet(t, h)
	if f.Offline != 1 || f.Compliant != 1 {
		t.Fatalf("fleet: offline %d compliant %d; want 1 and 1 (the group's device is not OFFLINE)", f.Offline, f.Compliant)
	}
	list, err := admin.ListDevices(ctx, &mamoriv1.ListDevicesRequest{Compliance: mamoriv1.Compliance_COMPLIANCE_OFFLINE})
	if err != nil || len(list.Devices) != 1 || list.Devices[0].Id != b.ID {
		t.Fatalf("offline list: %v %v", list, err)
	}
}
