package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// An empty Report {} (a keep-alive, or a hostile caller with a device
// certificate) keeps the device's verdict, control records and facts
// (issue #14 item 10): it says nothing, so it changes nothing but
// last_seen.
func TestEmptyReportKeepsVerdictAndFacts(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testEmptyReportKeeps(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testEmptyReportKeeps(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

func testEmptyReportKeeps(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	d := enroll(t, h, "pc-empty")
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")},
		Facts: servertest.Facts("pc-empty", "machine-pc-empty"), PolicyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	before := deviceState(t, h, d.ID)
	if before.Compliance != mamoriv1.Compliance_COMPLIANCE_COMPLIANT || len(before.Controls) == 0 {
		t.Fatalf("before: %v %v", before.Compliance, before.Controls)
	}
	h.Clock.Advance(time.Minute)
	for _, req := range []*mamoriv1.ReportRequest{{}, {Events: []*mamoriv1.Event{event("media_blocked")}}, {Facts: &mamoriv1.DeviceFacts{}}} {
		_, err := d.Client.Report(ctx, req)
		if req.Facts != nil {
			// Facts without a hostname are refused, never stored.
			wantCode(t, err, codes.InvalidArgument)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		after := deviceState(t, h, d.ID)
		if after.Compliance != before.Compliance || len(after.Reasons) != 0 || len(after.Controls) != len(before.Controls) ||
			after.PolicyVersion != before.PolicyVersion || !proto.Equal(after.Facts, before.Facts) {
			t.Fatalf("report %v changed the device:\nbefore %v\nafter  %v", req, before, after)
		}
		if !after.LastSeen.AsTime().After(before.LastSeen.AsTime()) {
			t.Fatalf("last_seen not moved: %v", after.LastSeen.AsTime())
		}
	}
	// A report with statuses is judged again.
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{Control: "agent",
		Mode: mamoriv1.Mode_MODE_ENFORCE, State: mamoriv1.ControlState_CONTROL_STATE_FAILED}}}); err != nil {
		t.Fatal(err)
	}
	if got := deviceState(t, h, d.ID); got.Compliance != mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT {
		t.Fatalf("after a failing status: %v", got.Compliance)
	}
}

// Device-reported names with NUL, line breaks or bidi overrides (issue
// #14 item 10): refused at enrolment like group names, neutralised to
// spaces in reports (which must keep flowing), never stored as sent.
func TestHostileHostnames(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	for _, host := range []string{"pc\x00evil", "pc-01\u202egpj.exe", "pc\r\nX-Injected: 1", "pc\u2066iso", "pc\x7f", "pc\u0085"} {
		_, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts(host, "machine-"+uuid.NewString()))
		wantCode(t, err, codes.InvalidArgument)
	}
	f := servertest.Facts("pc-ok", "machine-\u202ehidden")
	_, err := h.Enroll(t, h.Token(t, 1, 0), f)
	wantCode(t, err, codes.InvalidArgument)

	d := enroll(t, h, "pc-plain")
	rf := servertest.Facts("pc-plain\u202eexe.", "machine-pc-plain")
	rf.Os, rf.SerialNumber = "linux\x00", "SN\u2067-1"
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, Facts: rf}); err != nil {
		t.Fatalf("a report with hostile facts must still be taken: %v", err)
	}
	got := deviceState(t, h, d.ID).Facts
	if got.Hostname != "pc-plain exe." || got.Os != "linux " || got.SerialNumber != "SN -1" {
		t.Fatalf("stored facts %q %q %q", got.Hostname, got.Os, got.SerialNumber)
	}
	big := servertest.Facts("pc-plain", "machine-pc-plain")
	big.SerialNumber = strings.Repeat("S", 100_000)
	_, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{Facts: big})
	wantCode(t, err, codes.InvalidArgument)
}

// A one-time code a terminal spent on a login the module had given up on
// (mfa_failure reason=timed_out with its code_id) is consumed fleet-wide
// like a used one; a plain failure naming a code consumes nothing.
func TestTimedOutCodeConsumed(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	d := enroll(t, h, "pc-to")
	tc, err := officer.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "tanaka"})
	if err != nil {
		t.Fatal(err)
	}
	active := func() int32 {
		l, err := officer.ListMFAUsers(ctx, &mamoriv1.ListMFAUsersRequest{})
		if err != nil || len(l.Users) > 1 {
			t.Fatalf("list: %v %v", l, err)
		}
		if len(l.Users) == 0 { // tanaka has no enrolment: listed only with a live code
			return 0
		}
		return l.Users[0].TempCodesActive
	}
	fail := func(reason string) {
		e := usedEvent("mfa_failure", "tanaka", tc.Id)
		e.Attributes["reason"] = reason
		if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Events: []*mamoriv1.Event{e}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := active(); n != 1 {
		t.Fatalf("before: %d", n)
	}
	fail("")
	if n := active(); n != 1 {
		t.Fatalf("a plain failure consumed the code: %d active", n)
	}
	fail("timed_out")
	if n := active(); n != 0 {
		t.Fatalf("a timed-out use left the code active: %d", n)
	}
}
