package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/serve"
	"github.com/mamori-dev/mamori/server/store"
)

// TestOneActionTwoFrontEnds runs each operator action that both front
// ends offer through AdminService (gRPC, as mamorictl does) and through
// the console's form, as the same officer, and compares what the audit
// log says: the same action, actor and detail, whichever way it came
// (server/admin writes both). The target differs (two exceptions, two
// devices, two policy versions) and is checked against what each front
// end acted on.
func TestOneActionTwoFrontEnds(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	// One officer with an API token and a console login.
	op, tok, err := serve.CreateOperator(ctx, e.h.Srv.Store(), "両方", auth.RoleOfficer, e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := serve.SetConsoleLogin(ctx, e.h.Srv.Store(), e.h.Srv.OperatorSeeds(), op, "both-fronts", password, "test", e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	officer := account{login: "both-fronts", opID: op.ID, totp: cl.TOTPSecret}
	rpc := e.h.Admin(t, tok.Reveal())
	web := e.browser(t, "")
	web.signIn(officer)

	d := e.device(t, "pc-fronts", healthy())
	expiry := e.h.Clock.Now().Add(48 * time.Hour).Truncate(time.Minute)
	jst := time.FixedZone("JST", 9*3600)
	const usb = "0781:5581:SN-FRONTS"
	excs := map[string]string{} // front end → the exception it created
	form := func(path, formID string) url.Values {
		t.Helper()
		p := web.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, p.status)
		}
		v := url.Values{"csrf": {csrfOf(t, p)}}
		if formID != "" {
			v = hiddenFields(t, p.body, formID)
		}
		return v
	}
	postOK := func(path string, v url.Values) page {
		t.Helper()
		p := web.post(path, v)
		if p.status != http.StatusSeeOther && p.status != http.StatusOK {
			t.Fatalf("POST %s: %d\n%s", path, p.status, p.body)
		}
		return p
	}
	mfaForm := func() url.Values { return form("/mfa", "") }

	type frontEnd struct {
		name string
		// do runs the action and returns the audit target it should have.
		do func(t *testing.T) string
	}
	tests := []struct {
		action string
		grpc   func(t *testing.T) string
		web    func(t *testing.T) string
	}{
		{"exception.create",
			func(t *testing.T) string {
				r, err := rpc.CreateException(ctx, &mamoriv1.CreateExceptionRequest{Usb: usb, Device: d.ID, User: "tanaka",
					Reason: "議会資料 \"引用\" expires=never", ExpiresAt: timestamppb.New(expiry)})
				if err != nil {
					t.Fatal(err)
				}
				excs["grpc"] = r.Exception.Id
				return r.Exception.Id
			},
			func(t *testing.T) string {
				v := form("/exceptions", "")
				v.Set("usb", usb)
				v.Set("device", d.ID)
				v.Set("user", "tanaka")
				v.Set("reason", "議会資料 \"引用\" expires=never")
				v.Set("expires", expiry.In(jst).Format("2006-01-02T15:04"))
				p := postOK("/exceptions", v)
				id := strings.TrimPrefix(p.loc, "/exceptions#x-")
				excs["web"] = id
				return id
			}},
		{"exception.revoke",
			func(t *testing.T) string {
				if _, err := rpc.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: excs["grpc"], Reason: "用件終了"}); err != nil {
					t.Fatal(err)
				}
				return excs["grpc"]
			},
			func(t *testing.T) string {
				v := form("/exceptions", "")
				v.Set("reason", "用件終了")
				postOK("/exceptions/"+excs["web"]+"/revoke", v)
				return excs["web"]
			}},
		{"ledger.import",
			func(t *testing.T) string {
				if _, err := rpc.ImportLedger(ctx, &mamoriv1.ImportLedgerRequest{Csv: []byte(ledgerCSV), Reason: "2026年度"}); err != nil {
					t.Fatal(err)
				}
				return "ledger"
			},
			func(t *testing.T) string {
				v := form("/ledger", "")
				v.Set("reason", "2026年度")
				if p := web.postFile("/ledger", v, "l.csv", []byte(ledgerCSV)); p.status != http.StatusSeeOther {
					t.Fatalf("ledger import: %d\n%s", p.status, p.body)
				}
				return "ledger"
			}},
		{"policy.set",
			func(t *testing.T) string {
				cur, err := rpc.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
				if err != nil {
					t.Fatal(err)
				}
				v := cur.Policy.Version
				if _, err := rpc.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: withInterval(cur.Policy, 45*time.Second),
					ExpectedVersion: v, Reason: "間隔 <b>"}); err != nil {
					t.Fatal(err)
				}
				return fmt.Sprint(v + 1)
			},
			func(t *testing.T) string {
				cur, err := e.h.Srv.Store().CurrentPolicy(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ed := web.get("/policy/json")
				v := hiddenFields(t, ed.body, "policy-form")
				doc := textareaOf(t, ed.body)
				edited := strings.Replace(doc, `"report_interval": "45s"`, `"report_interval": "50s"`, 1)
				if edited == doc {
					t.Fatalf("could not edit:\n%s", doc)
				}
				v.Set("policy", edited)
				v.Set("reason", "間隔 <b>")
				pv := postOK("/policy/preview", v)
				postOK("/policy", hiddenFields(t, pv.body, "policy-save-form"))
				return fmt.Sprint(cur.Version + 1)
			}},
		{"mfa.enroll",
			func(t *testing.T) string {
				if _, err := rpc.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "grpc-user"}); err != nil {
					t.Fatal(err)
				}
				return "user:grpc-user"
			},
			func(t *testing.T) string {
				v := mfaForm()
				v.Set("user", "web-user")
				postOK("/mfa/enroll", v)
				return "user:web-user"
			}},
		{"mfa.unlock",
			func(t *testing.T) string {
				if _, err := rpc.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "grpc-user"}); err != nil {
					t.Fatal(err)
				}
				return "user:grpc-user"
			},
			func(t *testing.T) string {
				v := mfaForm()
				v.Set("user", "web-user")
				postOK("/mfa/unlock", v)
				return "user:web-user"
			}},
		{"mfa.reset",
			func(t *testing.T) string {
				if _, err := rpc.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "grpc-user", Reason: "端末紛失"}); err != nil {
					t.Fatal(err)
				}
				return "user:grpc-user"
			},
			func(t *testing.T) string {
				v := mfaForm()
				v.Set("user", "web-user")
				v.Set("reason", "端末紛失")
				postOK("/mfa/reset", v)
				return "user:web-user"
			}},
		// Last: it takes the device away.
		{"device.revoke",
			func(t *testing.T) string {
				dg := e.device(t, "pc-fronts-grpc", healthy())
				if _, err := rpc.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: dg.ID, Reason: "盗難届"}); err != nil {
					t.Fatal(err)
				}
				return dg.ID
			},
			func(t *testing.T) string {
				dw := e.device(t, "pc-fronts-web", healthy())
				v := form("/devices/"+dw.ID, "")
				v.Set("reason", "盗難届")
				postOK("/devices/"+dw.ID+"/revoke", v)
				return dw.ID
			}},
	}
	for _, tc := range tests {
		t.Run(tc.action, func(t *testing.T) {
			var got []store.AuditRecord
			for _, fe := range []frontEnd{{"grpc", tc.grpc}, {"web", tc.web}} {
				before := len(e.auditActions(t))
				target := fe.do(t)
				var mine []store.AuditRecord
				for _, r := range e.auditActions(t)[before:] {
					if r.Action == tc.action {
						mine = append(mine, r)
					}
				}
				if len(mine) != 1 {
					t.Fatalf("%s: %d %s records, want 1: %+v", fe.name, len(mine), tc.action, mine)
				}
				if r := mine[0]; r.Actor != op.ID || r.Target != target {
					t.Errorf("%s: actor %q target %q, want %q %q", fe.name, r.Actor, r.Target, op.ID, target)
				}
				got = append(got, mine[0])
			}
			// The MFA generation a write produced is the store's count of
			// such writes, not what the operator did.
			for i := range got {
				got[i].Detail = generationRE.ReplaceAllString(got[i].Detail, "")
			}
			if got[0].Detail != got[1].Detail {
				t.Errorf("the front ends recorded %s differently:\n grpc: %s\n  web: %s", tc.action, got[0].Detail, got[1].Detail)
			}
		})
	}
}

var generationRE = regexp.MustCompile(` generation=[0-9]+$`)

const ledgerCSV = "asset_id,hostname,serial,group,location,note\nA-1,pc-fronts,SN-1,市民課,2F,\n"

func withInterval(p *mamoriv1.Policy, d time.Duration) *mamoriv1.Policy {
	p.ReportInterval = durationpb.New(d)
	return p
}

// TestOneRefusalTwoFrontEnds: an action refused by server/admin is refused
// alike by both front ends, each in its own terms (a gRPC code; an HTTP
// status with the console's message).
func TestOneRefusalTwoFrontEnds(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	op, tok, err := serve.CreateOperator(ctx, e.h.Srv.Store(), "両方", auth.RoleOfficer, e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := serve.SetConsoleLogin(ctx, e.h.Srv.Store(), e.h.Srv.OperatorSeeds(), op, "both-fronts", password, "test", e.h.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	rpc := e.h.Admin(t, tok.Reveal())
	web := e.browser(t, "en")
	web.signIn(account{login: "both-fronts", opID: op.ID, totp: cl.TOTPSecret})
	csrf := csrfOf(t, web.get("/exceptions"))
	d := e.device(t, "pc-refused", healthy())
	e.device(t, "pc-twin", healthy())
	e.device(t, "pc-twin", healthy())
	expiry := e.h.Clock.Now().Add(48 * time.Hour).Truncate(time.Minute)
	r, err := rpc.CreateException(ctx, &mamoriv1.CreateExceptionRequest{Usb: "0781:5581:SN-1", Device: d.ID, Reason: "x", ExpiresAt: timestamppb.New(expiry)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: r.Exception.Id, Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	exc := func(mod func(*mamoriv1.CreateExceptionRequest)) func() error {
		req := &mamoriv1.CreateExceptionRequest{Usb: "0781:5581:SN-2", Device: d.ID, Reason: "r", ExpiresAt: timestamppb.New(expiry)}
		mod(req)
		return func() error { _, err := rpc.CreateException(ctx, req); return err }
	}
	excForm := func(mod func(url.Values)) (string, url.Values) {
		v := url.Values{"csrf": {csrf}, "usb": {"0781:5581:SN-2"}, "device": {d.ID}, "reason": {"r"},
			"expires": {expiry.In(time.FixedZone("JST", 9*3600)).Format("2006-01-02T15:04")}}
		mod(v)
		return "/exceptions", v
	}
	tests := []struct {
		name     string
		grpc     func() error
		wantCode codes.Code
		web      func() (string, url.Values)
		wantHTTP int
		wantText string
	}{
		{"exception: no single device by that name",
			exc(func(r *mamoriv1.CreateExceptionRequest) { r.Device = "pc-twin" }), codes.FailedPrecondition,
			func() (string, url.Values) { return excForm(func(v url.Values) { v.Set("device", "pc-twin") }) }, http.StatusBadRequest, "No single terminal"},
		{"exception: unknown device",
			exc(func(r *mamoriv1.CreateExceptionRequest) { r.Device = "pc-nowhere" }), codes.NotFound,
			func() (string, url.Values) { return excForm(func(v url.Values) { v.Set("device", "pc-nowhere") }) }, http.StatusBadRequest, "No single terminal"},
		{"exception: wildcard USB",
			exc(func(r *mamoriv1.CreateExceptionRequest) { r.Usb = "0781:5581:*" }), codes.InvalidArgument,
			func() (string, url.Values) { return excForm(func(v url.Values) { v.Set("usb", "0781:5581:*") }) }, http.StatusBadRequest, "The exception was refused"},
		{"exception: USB ID over the limit",
			exc(func(r *mamoriv1.CreateExceptionRequest) { r.Usb = strings.Repeat("x", 257) }), codes.InvalidArgument,
			func() (string, url.Values) {
				return excForm(func(v url.Values) { v.Set("usb", strings.Repeat("x", 257)) })
			}, http.StatusBadRequest, "could not be read"},
		{"exception revoked twice",
			func() error {
				_, err := rpc.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: r.Exception.Id, Reason: "again"})
				return err
			}, codes.Aborted,
			func() (string, url.Values) {
				return "/exceptions/" + r.Exception.Id + "/revoke", url.Values{"csrf": {csrf}, "reason": {"again"}}
			}, http.StatusConflict, "already revoked"},
		{"unknown exception",
			func() error {
				_, err := rpc.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: "no-such", Reason: "x"})
				return err
			}, codes.NotFound,
			func() (string, url.Values) {
				return "/exceptions/no-such/revoke", url.Values{"csrf": {csrf}, "reason": {"x"}}
			}, http.StatusNotFound, "No such exception"},
		{"revoke an unknown device",
			func() error {
				_, err := rpc.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: "no-such", Reason: "x"})
				return err
			}, codes.NotFound,
			func() (string, url.Values) {
				return "/devices/no-such/revoke", url.Values{"csrf": {csrf}, "reason": {"x"}}
			},
			http.StatusNotFound, "No such device"},
		{"revoke a device without a reason",
			func() error {
				_, err := rpc.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID, Reason: " "})
				return err
			}, codes.InvalidArgument,
			func() (string, url.Values) {
				return "/devices/" + d.ID + "/revoke", url.Values{"csrf": {csrf}, "reason": {" "}}
			},
			http.StatusBadRequest, "A reason"},
		{"reset an MFA user without factors",
			func() error {
				_, err := rpc.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "nobody", Reason: "x"})
				return err
			}, codes.NotFound,
			func() (string, url.Values) {
				return "/mfa/reset", url.Values{"csrf": {csrf}, "user": {"nobody"}, "reason": {"x"}}
			}, http.StatusNotFound, "no factors"},
		{"an invalid MFA user name",
			func() error {
				_, err := rpc.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "<script>"})
				return err
			}, codes.InvalidArgument,
			func() (string, url.Values) { return "/mfa/unlock", url.Values{"csrf": {csrf}, "user": {"<script>"}} },
			http.StatusBadRequest, "user name is not valid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.grpc()); got != tc.wantCode {
				t.Errorf("gRPC: %v, want %v", got, tc.wantCode)
			}
			path, v := tc.web()
			p := web.post(path, v)
			if p.status != tc.wantHTTP || !strings.Contains(p.body, tc.wantText) {
				t.Errorf("console: %d, want %d with %q\n%s", p.status, tc.wantHTTP, tc.wantText, p.body)
			}
		})
	}
}
