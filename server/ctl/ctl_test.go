package ctl_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/ctl"
	"github.com/mamori-dev/mamori/server/ctl/ctltest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	now = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	jst = time.FixedZone("JST", 9*60*60)
)

// langs are the two languages every command is checked in.
var langs = []struct{ name, env string }{{"en", "en_US.UTF-8"}, {"ja", "ja_JP.UTF-8"}}

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }

// fixture is a small fleet with every compliance state, a Japanese
// hostname and a hostile one (invalid UTF-8 and an escape sequence).
func fixture() *ctltest.Fake {
	enforced := func(name string, since time.Duration, ev map[string]string) *mamoriv1.ControlRecord {
		return &mamoriv1.ControlRecord{
			Status: &mamoriv1.ControlStatus{Control: name, Mode: mamoriv1.Mode_MODE_ENFORCE,
				State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Detail: "ok", Evidence: ev, ObservedAt: ts(-3 * time.Minute)},
			Since: ts(since),
		}
	}
	facts := func(host string) *mamoriv1.DeviceFacts {
		return &mamoriv1.DeviceFacts{Hostname: host, Os: "linux", OsVersion: "Debian GNU/Linux 12", Kernel: "6.1.0-27-amd64",
			AgentVersion: "v0.1.0", MachineId: "4c4c4544-" + host, TpmPresent: true, KeyStorage: "tpm"}
	}
	return &ctltest.Fake{
		Now: now,
		Devices: []*mamoriv1.Device{
			{Id: "3f2a9c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", Facts: facts("pc-soumu-01"), Compliance: mamoriv1.Compliance_COMPLIANCE_COMPLIANT,
				EnrolledAt: ts(-30 * 24 * time.Hour), LastSeen: ts(-3 * time.Minute), PolicyVersion: 7,
				Controls: []*mamoriv1.ControlRecord{
					enforced("agent", -30*24*time.Hour, nil),
					enforced("media", -29*24*time.Hour, map[string]string{"rule_sha256": "9f86d081884c7d65", "blocked_total": "3"}),
				}},
			{Id: "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", Facts: facts("窓口端末-02"), Compliance: mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT,
				Reasons:     []string{"media: FAILED (udev rule missing)", "login-mfa: DEGRADED (pam module altered)"},
				KeyAttested: true, EkFingerprint: "22a499c4cb14bbd081aa4fcff2823f86a776a4f9d56b086c147e10a8a96138b9",
				EnrolledAt: ts(-10 * 24 * time.Hour), LastSeen: ts(-5 * time.Minute), FailingSince: ts(-2*time.Hour - 10*time.Minute), PolicyVersion: 7,
				Controls: []*mamoriv1.ControlRecord{
					enforced("agent", -10*24*time.Hour, nil),
					{Status: &mamoriv1.ControlStatus{Control: "media", Mode: mamoriv1.Mode_MODE_ENFORCE, State: mamoriv1.ControlState_CONTROL_STATE_FAILED,
						Detail:   "udev rule masked by /etc/udev/rules.d/99-mamori.rules: remove that file",
						DetailId: "detail.media.udev-masked", DetailArgs: []string{"/etc/udev/rules.d/99-mamori.rules"},
						Evidence: map[string]string{"rule_path": "/etc/udev/rules.d/99-mamori.rules"}, ObservedAt: ts(-5 * time.Minute)},
						Since: ts(-2*time.Hour - 10*time.Minute)},
					{Status: &mamoriv1.ControlStatus{Control: "login-mfa", Mode: mamoriv1.Mode_MODE_MONITOR, State: mamoriv1.ControlState_CONTROL_STATE_DEGRADED,
						Detail: "pam module altered", ObservedAt: ts(-5 * time.Minute)}, Since: ts(-1 * time.Hour)},
				}},
			{Id: "c0ffee00-1111-4222-8333-444444444444", Facts: facts("pc-\x1b[31mevil\u202e\tx\r\n" + strings.Repeat("長", 40)), Compliance: mamoriv1.Compliance_COMPLIANCE_OFFLINE,
				EnrolledAt: ts(-60 * 24 * time.Hour), LastSeen: ts(-50 * time.Hour), OfflineSince: ts(-26 * time.Hour), PolicyVersion: 6},
			{Id: "d00dfeed-2222-4333-8444-555555555555", Facts: facts("pc-new"), Compliance: mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED,
				EnrolledAt: ts(-20 * time.Minute)},
			{Id: "e1e1e1e1-3333-4444-8555-666666666666", Facts: facts("pc-old"), Compliance: mamoriv1.Compliance_COMPLIANCE_REVOKED,
				EnrolledAt: ts(-400 * 24 * time.Hour), LastSeen: ts(-40 * 24 * time.Hour), RevokedAt: ts(-39 * 24 * time.Hour), PolicyVersion: 3},
		},
		Events: []*mamoriv1.StoredEvent{
			{DeviceId: "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", ReceivedAt: ts(-4 * time.Minute), Event: &mamoriv1.Event{
				Id: "a1", Time: ts(-5 * time.Minute), Control: "media", Kind: "usb_blocked",
				Attributes: map[string]string{"vendor": "0781", "product": "5567", "serial": "4C53"}}},
			{DeviceId: "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", ReceivedAt: ts(-2 * time.Hour), Event: &mamoriv1.Event{
				Id: "a2", Time: ts(-2*time.Hour - 10*time.Minute), Control: "media", Kind: "state_changed",
				Attributes: map[string]string{"from": "ENFORCED", "to": "FAILED"}}},
			{DeviceId: "3f2a9c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", ReceivedAt: ts(-1 * time.Hour), Event: &mamoriv1.Event{
				Id: "a3", Time: ts(-1 * time.Hour), Control: "login-mfa", Kind: "mfa_failure", Attributes: map[string]string{"user": "山田"}}},
		},
		Policy: &mamoriv1.Policy{Version: 7, ReportInterval: durationpb.New(5 * time.Minute), MaxReportAge: durationpb.New(24 * time.Hour),
			Controls: map[string]*mamoriv1.ControlPolicy{
				"media": {Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true, Settings: map[string]string{"allow": "0781:5567"}},
				"login-mfa": {Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "tanaka",
					"users.7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd": "yamada"}},
			},
			Groups: map[string]*mamoriv1.GroupPolicy{
				"市民課": {Controls: map[string]*mamoriv1.ControlPolicy{"login-mfa": {Mode: mamoriv1.Mode_MODE_ENFORCE,
					Settings: map[string]string{"users": "sato,tanaka", "require_attested": "true"}}}},
				"税務課": {Controls: map[string]*mamoriv1.ControlPolicy{"media": {Mode: mamoriv1.Mode_MODE_ENFORCE}}},
			}},
		Fleet: &mamoriv1.FleetSummaryResponse{Total: 5, Compliant: 1, Noncompliant: 1, Offline: 1, NeverReported: 1, Revoked: 1, PolicyVersion: 7},
		MFAUsers: []*mamoriv1.MFAUserInfo{
			{User: "sato", Method: "totp-hardware", EnrolledAt: ts(-2 * 24 * time.Hour), TokenSerial: "FT-000123"},
			{User: "tanaka", Method: "totp", EnrolledAt: ts(-30 * 24 * time.Hour), RecoveryCodesLeft: 9, TempCodesActive: 1},
			{User: "yamada", Method: "none", TempCodesActive: 1},
		},
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// env is the environment of a run against srv in lang.
func env(srv *ctltest.Server, lang string) map[string]string {
	return map[string]string{
		"LANG":          lang,
		"MAMORI_SERVER": srv.Addr, "MAMORI_CA_FILE": srv.CAFile, "MAMORI_TOKEN": ctltest.Token,
	}
}

func runEnv(t *testing.T, e map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := ctl.RunOptions(context.Background(), args, ctl.Options{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return e[k] }, Now: func() time.Time { return now }, Location: jst,
	})
	return result{out.String(), errb.String(), code}
}

func run(t *testing.T, srv *ctltest.Server, lang string, args ...string) result {
	t.Helper()
	return runEnv(t, env(srv, lang), "", args...)
}

func checkGolden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./server/ctl -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policyFile, []byte(`{"version": "7", "controls": {"media": {"mode": "MODE_ENFORCE", "required": true}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"devices", []string{"devices"}},
		{"devices-noncompliant", []string{"devices", "--noncompliant"}},
		{"devices-none", []string{"devices", "--never-reported", "--limit", "0", "--revoked=false"}},
		{"device-show", []string{"device", "show", "窓口端末-02"}},
		{"device-show-by-id", []string{"device", "show", "3f2a9c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}},
		{"device-show-hostile", []string{"device", "show", "c0ffee00-1111-4222-8333-444444444444"}},
		{"fleet", []string{"fleet"}},
		{"events", []string{"events"}},
		{"events-device", []string{"events", "--device", "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", "--limit", "1"}},
		{"token-create", []string{"token", "create", "--uses", "100", "--expires", "7d", "--note", "庁舎2F rollout"}},
		{"device-revoke", []string{"device", "revoke", "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd", "--reason", "盗難届"}},
		{"policy-get", []string{"policy", "get"}},
		{"policy-set", []string{"policy", "set", policyFile, "--reason", "USB 許可リスト更新"}},
		{"help", []string{"help"}},
		{"help-devices", []string{"devices", "-h"}},
		{"help-device-show", []string{"help", "device", "show"}},
		{"help-device-revoke", []string{"device", "revoke", "--help"}},
		{"help-token-create", []string{"token", "create", "-h"}},
		{"help-policy-set", []string{"policy", "set", "-h"}},
		{"help-events", []string{"help", "events"}},
		{"help-device", []string{"device", "-h"}},
		{"mfa-enroll", []string{"mfa", "enroll", "tanaka"}},
		{"mfa-list", []string{"mfa", "list"}},
		{"mfa-access", []string{"mfa", "access"}},
		{"mfa-access-device", []string{"mfa", "access", "--device", "窓口端末-02"}},
		{"mfa-temp-code", []string{"mfa", "temp-code", "tanaka", "--expires", "2h"}},
		{"mfa-unlock", []string{"mfa", "unlock", "tanaka", "--device", "7b1d0e2c-aaaa-4bbb-8ccc-dddddddddddd"}},
		{"mfa-reset", []string{"mfa", "reset", "tanaka", "--reason", "スマートフォン紛失"}},
		{"help-mfa", []string{"mfa", "-h"}},
		{"help-mfa-import", []string{"mfa", "import", "-h"}},
	}
	for _, tt := range tests {
		for _, l := range langs {
			t.Run(tt.name+"/"+l.name, func(t *testing.T) {
				srv := ctltest.Start(t, fixture())
				r := run(t, srv, l.env, tt.args...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
				}
				got := strings.NewReplacer(srv.Addr, "SERVER:PORT", srv.CAFingerprint, "CA-FINGERPRINT").Replace(r.stdout)
				checkOutputSafe(t, got)
				checkGolden(t, tt.name+"."+l.name, got)
			})
		}
	}
}

// checkOutputSafe: valid UTF-8, no escape sequences, no missing messages.
func checkOutputSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("output is not valid UTF-8:\n%q", s)
	}
	if strings.ContainsAny(s, "\x1b\u202e") {
		t.Errorf("output carries a control or bidi character:\n%q", s)
	}
	if strings.Contains(s, "[ctl.") {
		t.Errorf("output names a missing message:\n%s", s)
	}
}

func TestJSONParsesBack(t *testing.T) {
	type check func(t *testing.T, f *ctltest.Fake, out []byte)
	protoIs := func(want func(f *ctltest.Fake) proto.Message) check {
		return func(t *testing.T, f *ctltest.Fake, out []byte) {
			w := want(f)
			got := w.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(out, got); err != nil {
				t.Fatalf("parse %s: %v", out, err)
			}
			if diff := cmp.Diff(w, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}
	}
	tests := []struct {
		name  string
		args  []string
		check check
	}{
		{"devices", []string{"devices", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message {
			return &mamoriv1.ListDevicesResponse{Devices: f.Devices}
		})},
		{"devices filtered", []string{"devices", "--offline", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message {
			return &mamoriv1.ListDevicesResponse{Devices: f.Devices[2:3]}
		})},
		{"device show", []string{"device", "show", "pc-soumu-01", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message {
			return &mamoriv1.GetDeviceResponse{Device: f.Devices[0], RecentEvents: f.Events[2:3]}
		})},
		{"fleet", []string{"fleet", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message { return f.Fleet })},
		{"events", []string{"events", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message {
			return &mamoriv1.ListEventsResponse{Events: f.Events}
		})},
		{"policy get", []string{"policy", "get", "-o", "json"}, protoIs(func(f *ctltest.Fake) proto.Message { return f.Policy })},
		{"revoke", []string{"device", "revoke", "pc-x", "-o", "json", "--reason", "lost"}, nil},
		{"token", []string{"token", "create", "-o", "json", "--expires", "36h", "--uses", "3"}, func(t *testing.T, f *ctltest.Fake, out []byte) {
			var got ctl.TokenJSON
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("parse %s: %v", out, err)
			}
			want := ctl.TokenJSON{
				Token: ctltest.EnrollmentToken, TokenID: "0b7c6f1e-0000-4000-8000-000000000001",
				ExpiresAt: "2026-11-26T21:00:00Z", Uses: 3, CAFingerprint: f.CAFingerprint, Server: got.Server, AgentServer: got.Server,
				AgentCommand: fmt.Sprintf("mamori-agent enroll --server %s --token %s --ca-fingerprint %s", got.Server, ctltest.EnrollmentToken, f.CAFingerprint),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var outputs []string
			for _, l := range langs {
				f := fixture()
				if tt.name == "revoke" {
					f.Devices[0].Id = "pc-x"
				}
				srv := ctltest.Start(t, f)
				r := run(t, srv, l.env, tt.args...)
				if r.code != 0 {
					t.Fatalf("%s: exit %d: %s", l.name, r.code, r.stderr)
				}
				if tt.check != nil {
					tt.check(t, f, []byte(r.stdout))
				}
				outputs = append(outputs, strings.ReplaceAll(r.stdout, srv.Addr, "SERVER"))
			}
			if outputs[0] != outputs[1] && tt.name != "token" {
				t.Errorf("JSON differs by language:\n%s\n%s", outputs[0], outputs[1])
			}
		})
	}
}

func TestJSONIsStable(t *testing.T) {
	srv := ctltest.Start(t, fixture())
	first := run(t, srv, "C", "policy", "get").stdout
	for range 20 {
		if got := run(t, srv, "C", "policy", "get").stdout; got != first {
			t.Fatalf("policy get output changed between runs:\n%s\n%s", first, got)
		}
	}
	// What policy get prints, policy set takes back unchanged.
	path := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, srv, "C", "policy", "set", path, "--reason", "round trip"); r.code != 0 {
		t.Fatalf("policy set of policy get output: exit %d: %s", r.code, r.stderr)
	}
}

func TestTokenSentAndNeverShown(t *testing.T) {
	srv := ctltest.Start(t, fixture())
	r := run(t, srv, "C", "fleet")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	reqs := srv.Fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if got, want := reqs[0].Authorization, "Bearer "+ctltest.Token; got != want {
		t.Errorf("authorization = %q, want %q", got, want)
	}
	if reqs[0].TLSVersion != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", reqs[0].TLSVersion)
	}

	// A refused token: the message helps, and never shows the token.
	e := env(srv, "C")
	e["MAMORI_TOKEN"] = "mmo_op_wrong-secret-value"
	for _, args := range [][]string{{"fleet"}, {"devices", "--token", "mmo_op_other-secret"}, {"devices", "--bogus"}, {"help"}} {
		r := runEnv(t, e, "", args...)
		for _, secret := range []string{"mmo_op_wrong-secret-value", "mmo_op_other-secret", ctltest.Token} {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("%v printed the operator token:\n%s%s", args, r.stdout, r.stderr)
			}
		}
	}
	r = runEnv(t, e, "", "fleet")
	if r.code != 1 || !strings.Contains(r.stderr, "token refused: check MAMORI_TOKEN") {
		t.Errorf("refused token: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestConnectionSettings(t *testing.T) {
	srv := ctltest.Start(t, fixture())
	base := env(srv, "C")
	with := func(changes map[string]string) map[string]string {
		e := map[string]string{}
		for k, v := range base {
			e[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(e, k)
			} else {
				e[k] = v
			}
		}
		return e
	}
	upper := strings.ToUpper(srv.CAFingerprint)
	var colons []string
	for i := 0; i < len(upper); i += 2 {
		colons = append(colons, upper[i:i+2])
	}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     string
	}{
		{"env only", base, []string{"fleet"}, 0, ""},
		{"flags before the command", with(map[string]string{"MAMORI_SERVER": "", "MAMORI_TOKEN": ""}),
			[]string{"--server", srv.Addr, "--token", ctltest.Token, "fleet"}, 0, ""},
		{"flags after the command", with(map[string]string{"MAMORI_SERVER": ""}), []string{"fleet", "--server", srv.Addr}, 0, ""},
		{"flag beats env", with(map[string]string{"MAMORI_SERVER": "127.0.0.1:1"}), []string{"--server", srv.Addr, "fleet"}, 0, ""},
		{"pinned fingerprint", with(map[string]string{"MAMORI_CA_FILE": "", "MAMORI_CA_FINGERPRINT": srv.CAFingerprint}), []string{"fleet"}, 0, ""},
		{"pinned fingerprint as people copy it", with(map[string]string{"MAMORI_CA_FILE": ""}),
			[]string{"--ca-fingerprint", "SHA256:" + strings.Join(colons, ":"), "fleet"}, 0, ""},
		{"fingerprint flag beats CA file env", base, []string{"--ca-fingerprint", srv.CAFingerprint, "fleet"}, 0, ""},
		{"wrong fingerprint", with(map[string]string{"MAMORI_CA_FILE": "", "MAMORI_CA_FINGERPRINT": strings.Repeat("ab", 32)}),
			[]string{"fleet"}, 1, "does not have the CA of --ca-fingerprint"},
		{"bad fingerprint", with(map[string]string{"MAMORI_CA_FILE": "", "MAMORI_CA_FINGERPRINT": "abc"}), []string{"fleet"}, 2, "not 64 hex digits"},
		{"other CA", with(map[string]string{"MAMORI_CA_FILE": otherCA(t)}), []string{"fleet"}, 1, "does not verify against the given CA"},
		{"missing CA file", with(map[string]string{"MAMORI_CA_FILE": "/nonexistent/ca.pem"}), []string{"fleet"}, 2, "cannot read the server CA"},
		{"no CA", with(map[string]string{"MAMORI_CA_FILE": ""}), []string{"fleet"}, 2, "--ca-file PATH"},
		{"both CA flags", base, []string{"--ca-file", srv.CAFile, "--ca-fingerprint", srv.CAFingerprint, "fleet"}, 2, "not both"},
		{"no server", with(map[string]string{"MAMORI_SERVER": ""}), []string{"fleet"}, 2, "MAMORI_SERVER"},
		{"server without port", with(map[string]string{"MAMORI_SERVER": "mamori.example.lg.jp"}), []string{"fleet"}, 2, "not HOST:PORT"},
		{"no token", with(map[string]string{"MAMORI_TOKEN": ""}), []string{"fleet"}, 2, "set MAMORI_TOKEN"},
		{"token with newline", with(map[string]string{"MAMORI_TOKEN": "a\nb"}), []string{"fleet"}, 2, "line breaks"},
		{"bad timeout", base, []string{"fleet", "--timeout", "-1s"}, 2, "--timeout"},
		{"unparsable timeout", base, []string{"fleet", "--timeout", "soon"}, 2, "flag -timeout: invalid value \"soon\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runEnv(t, tt.env, "", tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tt.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.want)
			}
		})
	}
}

// otherCA writes the CA of another fake server.
func otherCA(t *testing.T) string {
	return ctltest.Start(t, fixture()).CAFile
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		code   codes.Code
		msg    string
		en, ja string
	}{
		{codes.Unauthenticated, "operator token refused", "token refused: check MAMORI_TOKEN", "MAMORI_TOKEN を確認してください"},
		{codes.PermissionDenied, "operator yamada has role helpdesk; this needs role officer", "your operator role may not do this: operator yamada has role helpdesk; this needs role officer", "this needs role officer"},
		{codes.NotFound, "not found", "check the ID or hostname", "ID かホスト名を確認してください"},
		{codes.InvalidArgument, "uses 0: must be between 1 and 100000", "the server refused the request: uses 0", "サーバーが要求を受け付けませんでした: uses 0"},
		{codes.FailedPrecondition, "more than one device has that hostname: use the device ID", "use the device ID", "use the device ID"},
		{codes.Aborted, "conflict: the record changed since it was read", "read it again and retry", "もう一度読み込んでから"},
		{codes.ResourceExhausted, "too many", "try again later", "後で試す"},
		{codes.Unimplemented, "unknown method", "update mamori-server", "mamori-server を更新"},
		{codes.Internal, "internal error", "server error Internal: internal error", "サーバーエラー Internal"},
		{codes.Unavailable, "draining", "cannot reach the server at", "サーバーに接続できません"},
		{codes.PermissionDenied, "bad\x1b[2Jmessage\xff", "bad\ufffd[2Jmessage\ufffd", "bad\ufffd[2Jmessage"},
	}
	for _, tt := range tests {
		for _, l := range langs {
			t.Run(tt.code.String()+"/"+l.name, func(t *testing.T) {
				f := fixture()
				f.Errs = map[string]error{"GetDevice": status.Error(tt.code, tt.msg)}
				srv := ctltest.Start(t, f)
				r := run(t, srv, l.env, "device", "show", "pc-soumu-01")
				if r.code != 1 {
					t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
				}
				want := tt.en
				if l.name == "ja" {
					want = tt.ja
				}
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
			})
		}
	}
}

func TestUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	srv := ctltest.Start(t, fixture())
	for _, l := range langs {
		e := env(srv, l.env)
		e["MAMORI_SERVER"] = addr
		r := runEnv(t, e, "", "fleet")
		want := map[string]string{"en": "cannot reach the server at " + addr + ": is mamori-server running?",
			"ja": addr + " のサーバーに接続できません。mamori-server は起動していますか？"}[l.name]
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", l.name, r.code, r.stderr, want)
		}
	}
}

func TestDeadline(t *testing.T) {
	f := fixture()
	f.Delay = 5 * time.Second
	srv := ctltest.Start(t, f)
	start := time.Now()
	r := run(t, srv, "C", "fleet", "--timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "did not answer within 300ms: try again, or raise --timeout") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v despite --timeout 300ms", d)
	}
}

func TestUsageErrorsSendNothing(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	huge := write("huge.json", `{"version":"7","controls":{"media":{"settings":{"x":"`+strings.Repeat("a", 2<<20)+`"}}}}`)
	notJSON := write("policy.yaml", "version: 7\ncontrols: {}\n")
	unknown := write("unknown.json", `{"version":"7","contrls":{}}`)
	noVersion := write("noversion.json", `{"controls":{}}`)
	latin1 := write("latin1.json", "{\"version\":\"7\",\"controls\":{\"media\":{\"settings\":{\"note\":\"caf\xe9\"}}}}")
	tests := []struct {
		name   string
		args   []string
		stdin  string
		en, ja string
	}{
		{"no command", nil, "", "no command given", "コマンドが指定されていません"},
		{"unknown command", []string{"frobnicate"}, "", `unknown command "frobnicate"`, "不明なコマンド"},
		{"unknown subcommand", []string{"device", "delete", "x"}, "", `unknown or missing subcommand "delete"`, "サブコマンド"},
		{"unknown flag", []string{"devices", "--everything"}, "", "unknown flag -everything", "不明なフラグ -everything"},
		{"flag without value", []string{"devices", "--limit"}, "", "flag -limit needs a value", "フラグ -limit には値が必要です"},
		{"bad -o", []string{"fleet", "-o", "yaml"}, "", `-o "yaml": use table or json`, "table か json"},
		{"two filters", []string{"devices", "--offline", "--revoked"}, "", "at most one of", "1 つだけ"},
		{"negative limit", []string{"devices", "--limit", "-5"}, "", "--limit -5", "--limit -5"},
		{"extra argument", []string{"fleet", "now"}, "", "unexpected arguments: now", "余分な引数"},
		{"device show without ID", []string{"device", "show"}, "", "an argument is missing", "引数が足りません"},
		{"revoke without reason", []string{"device", "revoke", "pc-1"}, "", "a reason is required: add --reason TEXT", "理由が必要です"},
		{"revoke with blank reason", []string{"device", "revoke", "pc-1", "--reason", "  "}, "", "a reason is required", "理由が必要です"},
		{"bad duration", []string{"token", "create", "--expires", "tomorrow"}, "", `--expires "tomorrow" is not a duration`, "期間として読めません"},
		{"zero duration", []string{"token", "create", "--expires", "0s"}, "", "between 1m and 90d", "1m から 90d"},
		{"too long", []string{"token", "create", "--expires", "365d"}, "", "between 1m and 90d", "1m から 90d"},
		{"negative uses", []string{"token", "create", "--uses", "-1"}, "", "--uses -1: must be between 1 and 100000", "--uses -1: 1 から 100000"},
		{"huge uses", []string{"token", "create", "--uses", "100001"}, "", "--uses 100001", "--uses 100001"},
		{"overflowing uses", []string{"token", "create", "--uses", "99999999999999999999"}, "", "flag -uses: invalid value", "フラグ -uses の値"},
		{"long note", []string{"token", "create", "--note", strings.Repeat("メ", 513)}, "", "at most 512 characters", "512 文字以内"},
		{"policy set without reason", []string{"policy", "set", notJSON}, "", "a reason is required", "理由が必要です"},
		{"policy file missing", []string{"policy", "set", filepath.Join(dir, "nope.json"), "--reason", "r"}, "", "cannot read policy file", "ポリシーファイル"},
		{"policy file is a directory", []string{"policy", "set", dir, "--reason", "r"}, "", "is a directory", "ディレクトリです"},
		{"policy file too large", []string{"policy", "set", huge, "--reason", "r"}, "", "larger than 1 MiB", "1 MiB を超えています"},
		{"policy from huge stdin", []string{"policy", "set", "-", "--reason", "r"}, strings.Repeat(" ", 1<<20+1), "standard input is larger than 1 MiB", "標準入力 が 1 MiB を超えています"},
		{"policy file not JSON", []string{"policy", "set", notJSON, "--reason", "r"}, "", "is not a valid policy", "ポリシーとして正しくありません"},
		{"policy unknown field", []string{"policy", "set", unknown, "--reason", "r"}, "", "contrls", "contrls"},
		{"policy without version", []string{"policy", "set", noVersion, "--reason", "r"}, "", "has no version", "バージョンがありません"},
		{"policy not UTF-8", []string{"policy", "set", latin1, "--reason", "r"}, "", "is not UTF-8", "UTF-8 ではありません"},
		{"two policy files", []string{"policy", "set", noVersion, notJSON, "--reason", "r"}, "", "unexpected arguments", "余分な引数"},
		{"mfa enroll without user", []string{"mfa", "enroll"}, "", "an argument is missing", "引数が足りません"},
		{"mfa enroll tpm-pin", []string{"mfa", "enroll", "tanaka", "--method", "tpm-pin"}, "", `--method "tpm-pin": only totp`, "totp だけです"},
		{"mfa temp-code too long", []string{"mfa", "temp-code", "tanaka", "--expires", "25h"}, "", "between 1m and 24h", "1m から 24h"},
		{"mfa temp-code too short", []string{"mfa", "temp-code", "tanaka", "--expires", "30s"}, "", "between 1m and 24h", "1m から 24h"},
		{"mfa temp-code bad duration", []string{"mfa", "temp-code", "tanaka", "--expires", "soon"}, "", "is not a duration", "期間として読めません"},
		{"mfa import missing file", []string{"mfa", "import", filepath.Join(dir, "nope.csv")}, "", "cannot read seed file", "シードファイル"},
		{"mfa import a directory", []string{"mfa", "import", dir}, "", "is a directory", "ディレクトリです"},
		{"mfa import huge stdin", []string{"mfa", "import", "-"}, strings.Repeat("x", 1<<20+1), "larger than 1 MiB", "1 MiB を超えています"},
		{"mfa unknown subcommand", []string{"mfa", "delete", "tanaka"}, "", `unknown or missing subcommand "delete"`, "サブコマンド"},
	}
	for _, tt := range tests {
		for _, l := range langs {
			t.Run(tt.name+"/"+l.name, func(t *testing.T) {
				srv := ctltest.Start(t, fixture())
				r := runEnv(t, env(srv, l.env), tt.stdin, tt.args...)
				if r.code != 2 {
					t.Fatalf("exit %d, want 2; stderr %q", r.code, r.stderr)
				}
				want := tt.en
				if l.name == "ja" {
					want = tt.ja
				}
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
				if n := len(srv.Fake.Requests()); n != 0 {
					t.Errorf("%d requests sent, want none", n)
				}
				checkOutputSafe(t, r.stderr)
			})
		}
	}
}

func TestPolicySetConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(path, []byte(`{"version":"6"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, l := range langs {
		srv := ctltest.Start(t, fixture())
		r := run(t, srv, l.env, "policy", "set", path, "--reason", "x")
		want := map[string]string{
			"en": "the policy changed since you read it (now version 7): run policy get again",
			"ja": "読み込んだ後にポリシーが変更されました（現在のバージョン 7）",
		}[l.name]
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", l.name, r.code, r.stderr, want)
		}
		reqs := srv.Fake.Requests()
		if len(reqs) != 2 || reqs[0].Method != "SetPolicy" || reqs[1].Method != "GetPolicy" {
			t.Fatalf("requests %v, want SetPolicy then GetPolicy", reqs)
		}
		set := reqs[0].Msg.(*mamoriv1.SetPolicyRequest)
		if set.ExpectedVersion != 6 || set.Reason != "x" {
			t.Errorf("SetPolicy expected_version %d reason %q, want 6 and x", set.ExpectedVersion, set.Reason)
		}
	}
}

func TestPolicySetFromStdin(t *testing.T) {
	srv := ctltest.Start(t, fixture())
	r := runEnv(t, env(srv, "C"), `{"version":"7","controls":{"agent":{"mode":"MODE_ENFORCE","required":true}}}`, "policy", "set", "-", "--reason", "pipe")
	if r.code != 0 || r.stdout != "policy updated: version 7 → 8\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := srv.Fake.Policy.GetControls()["agent"].GetRequired(); !got {
		t.Errorf("policy not set: %v", srv.Fake.Policy)
	}
}

func TestRequestsCarryFlags(t *testing.T) {
	srv := ctltest.Start(t, fixture())
	run(t, srv, "C", "token", "create", "--expires", "90m", "--uses", "100", "--note", "庁舎2F")
	run(t, srv, "C", "device", "revoke", "--reason", "lost laptop", "pc-x")
	run(t, srv, "C", "devices", "--never-reported")
	run(t, srv, "C", "events", "--device", "dev-1")
	var got []proto.Message
	for _, r := range srv.Fake.Requests() {
		got = append(got, r.Msg)
	}
	want := []proto.Message{
		&mamoriv1.CreateEnrollmentTokenRequest{Ttl: durationpb.New(90 * time.Minute), Uses: 100, Note: "庁舎2F"},
		&mamoriv1.RevokeDeviceRequest{DeviceId: "pc-x", Reason: "lost laptop"},
		&mamoriv1.ListDevicesRequest{Compliance: mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, PageSize: 500},
		&mamoriv1.ListEventsRequest{DeviceId: "dev-1", PageSize: 100},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestDevicesPaging(t *testing.T) {
	f := fixture()
	f.Devices = nil
	for i := range 5000 {
		f.Devices = append(f.Devices, &mamoriv1.Device{
			Id:    fmt.Sprintf("%08x-0000-4000-8000-000000000000", i),
			Facts: &mamoriv1.DeviceFacts{Hostname: fmt.Sprintf("端末-%04d", i)}, Compliance: mamoriv1.Compliance_COMPLIANCE_COMPLIANT,
			LastSeen: ts(-time.Duration(i) * time.Second),
		})
	}
	srv := ctltest.Start(t, f)

	r := run(t, srv, "C", "devices", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got mamoriv1.ListDevicesResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) != 5000 {
		t.Fatalf("%d devices, want 5000", len(got.Devices))
	}
	for i, d := range got.Devices {
		if want := f.Devices[i].Id; d.Id != want {
			t.Fatalf("device %d is %s, want %s (lost or repeated page)", i, d.Id, want)
		}
	}
	if n := len(srv.Fake.Requests()); n != 10 {
		t.Errorf("%d ListDevices calls, want 10 pages of 500", n)
	}

	before := len(srv.Fake.Requests())
	r = run(t, srv, "ja_JP.UTF-8", "devices", "--limit", "1234")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1+1234+1 { // header, rows, count
		t.Errorf("%d lines, want %d", len(lines), 1236)
	}
	if last := lines[len(lines)-1]; last != "1234 台" {
		t.Errorf("last line %q", last)
	}
	reqs := srv.Fake.Requests()[before:]
	var sizes []int32
	for _, q := range reqs {
		sizes = append(sizes, q.Msg.(*mamoriv1.ListDevicesRequest).PageSize)
	}
	if diff := cmp.Diff([]int32{500, 500, 234}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}

	// --group is sent with every page, not only the first.
	before = len(srv.Fake.Requests())
	if r := run(t, srv, "C", "devices", "--group", "市民課", "-o", "json"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	reqs = srv.Fake.Requests()[before:]
	if len(reqs) < 2 {
		t.Fatalf("%d pages; want several", len(reqs))
	}
	for i, q := range reqs {
		if g := q.Msg.(*mamoriv1.ListDevicesRequest).Group; g != "市民課" {
			t.Errorf("page %d asked for group %q", i+1, g)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runEnv(t, nil, "", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "mamorictl ") {
		t.Errorf("exit %d stdout %q", r.code, r.stdout)
	}
}
