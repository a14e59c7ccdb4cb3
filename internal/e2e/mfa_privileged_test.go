package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/ctl"
	"github.com/mamori-dev/mamori/server/servertest"
)

// mamorictlAs runs mamorictl with an operator's token and returns its exit
// code and output (stdout then stderr).
func mamorictlAs(t *testing.T, h *servertest.Harness, token, lang string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{
		"LANG": lang, "MAMORI_SERVER": h.AdminAddr, "MAMORI_CA_FILE": filepath.Join(h.DataDir, "ca.pem"), "MAMORI_TOKEN": token,
	}
	code := ctl.RunOptions(ctx, args, ctl.Options{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }, Now: h.Clock.Now, Location: time.UTC,
	})
	return code, out.String() + errb.String()
}

// TestPrivilegedTempCodeEndToEnd (issue 21 item 10): a real server and two
// real agent cores over mTLS, every operator step through mamorictl. A
// temporary code for root (a privileged name) or for a user the policy
// lists in privileged_users is refused to the helpdesk, refused without
// --device and refused for more than 1 h, each with the rule in Japanese
// or English; an officer's code bound to terminal A works on A and is
// refused on B (B never receives it); a code for an ordinary user still
// needs neither.
func TestPrivilegedTempCodeEndToEnd(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	helpdesk := h.Operator(t, "窓口", auth.RoleHelpdesk)
	officer := h.Operator(t, "責任者", auth.RoleOfficer)
	for _, u := range []string{"root", "tanaka"} {
		var en struct {
			URI string `json:"otpauth_uri"`
		}
		if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", u, "-o", "json")), &en); err != nil {
			t.Fatal(err)
		}
		if _, err := url.Parse(en.URI); err != nil {
			t.Fatal(err)
		}
	}
	setLoginMFA(t, h, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR,
		Settings: map[string]string{"users": "*", "privileged_users": "sato"}}, nil)
	a, b := startMFATerminal(t, h, "pc-priv-a"), startMFATerminal(t, h, "pc-priv-b")
	for _, m := range []*mfaTerminal{a, b} {
		m.waitRound(t, "the first bundle", func(daemon.RoundResult) bool { return slices.Contains(m.ver.Users(), "root") })
	}

	refused := func(what, token, lang, want string, args ...string) {
		t.Helper()
		code, out := mamorictlAs(t, h, token, lang, args...)
		if code == 0 || !strings.Contains(out, want) {
			t.Fatalf("%s: exit %d, want a refusal with %q:\n%s", what, code, want, out)
		}
		t.Logf("%s: exit %d: %s", what, code, strings.TrimSpace(out))
	}
	refused("helpdesk, root", helpdesk, "ja_JP.UTF-8", "officer 権限", "mfa", "temp-code", "root", "--device", a.id, "--expires", "30m")
	refused("helpdesk, root (en)", helpdesk, "C", "needs the officer role", "mfa", "temp-code", "root", "--device", a.id)
	refused("helpdesk, policy's privileged_users", helpdesk, "C", "policy privileged_users", "mfa", "temp-code", "sato")
	refused("officer, root without --device", officer, "C", "bind the code to the one terminal", "mfa", "temp-code", "root")
	refused("officer, root for 2h", officer, "ja_JP.UTF-8", "1h 以内", "mfa", "temp-code", "root", "--device", a.id, "--expires", "2h")
	refused("officer, root on an unknown device", officer, "C", "", "mfa", "temp-code", "root", "--device", "pc-nowhere")
	refused("officer, a hostile device name", officer, "C", "", "mfa", "temp-code", "root", "--device", strings.Repeat("\u202e\x00x", 5000))
	refused("officer, a revoked-looking empty device", officer, "C", "bind the code", "mfa", "temp-code", "root", "--device", "   ")

	// The officer's code, bound to A for 1 h.
	code, out := mamorictlAs(t, h, officer, "C", "mfa", "temp-code", "root", "--device", "pc-priv-a", "--expires", "1h", "-o", "json")
	var tc struct {
		Code     string `json:"code"`
		DeviceID string `json:"device_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &tc) != nil || tc.DeviceID != a.id {
		t.Fatalf("officer's bound code: exit %d %+v\n%s", code, tc, out)
	}
	code, out = mamorictlAs(t, h, officer, "C", "mfa", "temp-code", "root", "--device", a.id, "--expires", "1h", "-o", "json")
	var tc2 struct {
		Code string `json:"code"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &tc2) != nil {
		t.Fatalf("second bound code: exit %d\n%s", code, out)
	}
	a.caughtUp(t, h, "the bound codes on A")
	b.caughtUp(t, h, "B's bundle")
	if v := b.login(t, "root", tc2.Code); v != mfa.Deny {
		t.Fatalf("code bound to A, used on B: %v", v)
	}
	if v := a.login(t, "root", tc.Code); v != mfa.Allow {
		t.Fatalf("code bound to A, used on A: %v", v)
	}
	// An ordinary user's code: the helpdesk, no device, 24 h, every terminal.
	code, out = mamorictlAs(t, h, helpdesk, "C", "mfa", "temp-code", "tanaka", "--expires", "24h", "-o", "json")
	var tc3 struct {
		Code     string `json:"code"`
		DeviceID string `json:"device_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &tc3) != nil || tc3.DeviceID != "" {
		t.Fatalf("ordinary user's code: exit %d\n%s", code, out)
	}
	b.caughtUp(t, h, "tanaka's code on B")
	if v := b.login(t, "tanaka", tc3.Code); v != mfa.Allow {
		t.Fatalf("ordinary user's code on B: %v", v)
	}
}
