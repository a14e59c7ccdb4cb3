package loginmfa_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// debianSSHDOut is what Debian 12's sshd -T prints for its default
// sshd_config (the keywords the check reads, in sshd's order).
const debianSSHDOut = `port 22
usepam yes
permitrootlogin without-password
hostbasedauthentication no
pubkeyauthentication yes
gssapiauthentication no
passwordauthentication yes
kbdinteractiveauthentication no
pidfile /run/sshd.pid
authenticationmethods any
`

func sshdT(over map[string]string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(debianSSHDOut), "\n") {
		k, _, _ := strings.Cut(l, " ")
		if v, ok := over[k]; ok {
			l = k + " " + v
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

func TestSSHDBypasses(t *testing.T) {
	for _, tc := range []struct {
		name string
		over map[string]string
		want []string
	}{
		{"debian default: a key gets in alone", nil, []string{"publickey"}},
		{"keyboard-interactive only", map[string]string{"authenticationmethods": "keyboard-interactive"}, nil},
		{"the agent's drop-in", map[string]string{"authenticationmethods": "publickey,keyboard-interactive keyboard-interactive", "kbdinteractiveauthentication": "yes"}, nil},
		{"the issue's form: password then kbd", map[string]string{"authenticationmethods": "publickey,keyboard-interactive password,keyboard-interactive", "kbdinteractiveauthentication": "yes"}, nil},
		{"keyboard-interactive:pam counts", map[string]string{"authenticationmethods": "publickey,keyboard-interactive:pam"}, nil},
		{"a second chain of a key alone", map[string]string{"authenticationmethods": "keyboard-interactive publickey"}, []string{"publickey"}},
		{"a chain of a disabled method is no way in", map[string]string{"authenticationmethods": "keyboard-interactive hostbased"}, nil},
		{"gssapi and hostbased on", map[string]string{"gssapiauthentication": "yes", "hostbasedauthentication": "yes", "pubkeyauthentication": "no"}, []string{"gssapi-with-mic", "hostbased"}},
		{"key plus hostbased skips PAM too", map[string]string{"authenticationmethods": "publickey,hostbased", "hostbasedauthentication": "yes"}, []string{"publickey,hostbased"}},
		{"UsePAM no: the password never meets PAM", map[string]string{"usepam": "no", "pubkeyauthentication": "no"}, []string{"password"}},
		{"keys off, password through PAM", map[string]string{"pubkeyauthentication": "no"}, nil},
		{"unknown method: assumed usable", map[string]string{"authenticationmethods": "magic"}, []string{"magic"}},
		{"upper case yes", map[string]string{"pubkeyauthentication": "YES", "authenticationmethods": "ANY"}, []string{"publickey"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loginmfa.ParseSSHDConfig([]byte(sshdT(tc.over))).Bypasses()
			if !slices.Equal(got, tc.want) {
				t.Errorf("Bypasses() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSSHDConfigHostile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"empty", "", map[string]string{}},
		{"first value kept", "authenticationmethods publickey\nauthenticationmethods any\n", map[string]string{"authenticationmethods": "publickey"}},
		{"odd keywords ignored", "Auth-Methods x\n\x00 y\n  usepam   yes  \n", map[string]string{"usepam": "yes"}},
		{"keyword without value", "usepam\n", map[string]string{"usepam": ""}},
		{"crlf", "usepam yes\r\n", map[string]string{"usepam": "yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loginmfa.ParseSSHDConfig([]byte(tc.in))
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
	// Oversized: one long line and many keys are read within 1 MiB, no panic.
	big := strings.Repeat("x", 3<<20) + "\nusepam yes\n"
	loginmfa.ParseSSHDConfig([]byte(big))
	many := strings.Repeat("k v\n", 1<<19)
	if got := loginmfa.ParseSSHDConfig([]byte(many)); len(got) != 1 {
		t.Fatalf("many: %d keys", len(got))
	}
}

// fakeSSHD answers `sshd -T` (per user through -C) and `sshd -t`, and
// records the calls.
type fakeSSHD struct {
	base    map[string]string
	perUser map[string]map[string]string // Match blocks
	dropIn  string                       // where the agent's drop-in lands
	calls   []string
	failT   bool // sshd -t refuses
	reloads int
}

func (f *fakeSSHD) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	if !strings.HasSuffix(name, "sshd") {
		return nil, nil
	}
	if slices.Equal(args, []string{"-t"}) {
		if f.failT {
			return []byte("/etc/ssh/sshd_config.d/00-mamori-mfa.conf line 3: Bad configuration option"), errors.New("exit status 255")
		}
		return nil, nil
	}
	over := map[string]string{}
	for k, v := range f.base {
		over[k] = v
	}
	if b, err := os.ReadFile(f.dropIn); err == nil && strings.Contains(string(b), "AuthenticationMethods") {
		over["authenticationmethods"] = "publickey,keyboard-interactive keyboard-interactive"
		over["kbdinteractiveauthentication"] = "yes"
	}
	if len(args) == 3 && args[1] == "-C" {
		u, _, _ := strings.Cut(strings.TrimPrefix(args[2], "user="), ",")
		for k, v := range f.perUser[u] {
			over[k] = v
		}
	}
	return []byte(sshdT(over)), nil
}

func TestSSHDDropIn(t *testing.T) {
	r := newRoot(t, commonAuthEnabled)
	r.write(t, "etc/pam.d/sshd", "@include common-auth\n")
	os.MkdirAll(filepath.Join(r.dir, "etc/ssh/sshd_config.d"), 0o755)
	f := &fakeSSHD{dropIn: filepath.Join(r.dir, loginmfa.DropInPath)}
	ev := &controltest.Emitter{}
	newC := func(manual bool) *loginmfa.Control {
		yes := true
		return loginmfa.New(loginmfa.Options{Root: r.dir, Emitter: ev, Users: func() []string { return []string{"alice", "bob,x"} },
			TPMPresent: func() bool { return false }, Run: f.run, Supported: &yes,
			ModuleDirs: []string{"usr/lib/x86_64-linux-gnu/security"},
			ReloadSSHD: func(context.Context) error { f.reloads++; return nil },
			LookPath: func(p string) (string, error) {
				if p == "sshd" {
					return "/usr/sbin/sshd", nil
				}
				return "", errors.New("not found")
			}})
	}
	pol := map[string]string{"services": "login,sshd", "pam_config": "manual"}
	ctx := t.Context()

	// sshd not running (no /run/sshd, where sshd -T refuses): nothing to
	// read, no state change, said in the evidence.
	c0 := newC(true)
	if err := c0.Apply(ctx, enforce(pol)); err != nil {
		t.Fatal(err)
	}
	if st, _ := c0.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || !strings.HasPrefix(st.Evidence["sshd.config"], "sshd not running") {
		t.Fatalf("sshd stopped: %v %q %v", st.State, st.Detail, st.Evidence)
	}
	os.MkdirAll(filepath.Join(r.dir, "run/sshd"), 0o755)

	// Manual: the bypass is reported, nothing is written.
	c := newC(true)
	if err := c.Apply(ctx, enforce(pol)); err != nil {
		t.Fatal(err)
	}
	st, _ := c.Status(ctx)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || st.Evidence["sshd.bypass"] != "publickey" || !strings.Contains(st.Detail, "publickey") {
		t.Fatalf("manual: %v %q %v", st.State, st.Detail, st.Evidence)
	}
	if _, err := os.Stat(f.dropIn); err == nil {
		t.Fatal("manual mode wrote the drop-in")
	}
	// The users' Match blocks were asked for; the name with a comma was not passed to -C.
	if !slices.Contains(f.calls, "/usr/sbin/sshd -T -C user=alice,host=localhost,addr=127.0.0.1") || slices.ContainsFunc(f.calls, func(s string) bool { return strings.Contains(s, "bob") }) {
		t.Fatalf("calls %q", f.calls)
	}

	// sshd -t refuses: the drop-in is removed again and the state says why.
	pol["pam_config"] = "auto"
	f.failT = true
	c = newC(false)
	if err := c.Apply(ctx, enforce(pol)); err == nil || !strings.Contains(err.Error(), "sshd -t refused") {
		t.Fatalf("sshd -t refusing: %v", err)
	}
	if _, err := os.Stat(f.dropIn); err == nil {
		t.Fatal("a refused drop-in was left in place")
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Fatalf("after refused drop-in: %v %s", st.State, st.Detail)
	}

	// Auto: written, validated, sshd reloaded, ENFORCED.
	f.failT = false
	if err := c.Apply(ctx, enforce(pol)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.dropIn)
	if err != nil || !strings.Contains(string(b), "AuthenticationMethods publickey,keyboard-interactive keyboard-interactive\n") {
		t.Fatalf("drop-in %q %v", b, err)
	}
	if f.reloads != 1 {
		t.Fatalf("reloads %d", f.reloads)
	}
	st, _ = c.Status(ctx)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || st.Evidence["sshd.drop_in"] != "true" {
		t.Fatalf("auto: %v %q %v", st.State, st.Detail, st.Evidence)
	}

	// A Match block for alice puts a key-only login back: FAILED, named.
	f.perUser = map[string]map[string]string{"alice": {"authenticationmethods": "publickey"}}
	if err := c.Apply(ctx, enforce(pol)); err == nil || !strings.Contains(err.Error(), "user alice: publickey") {
		t.Fatalf("match block: %v", err)
	}
	st, _ = c.Status(ctx)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || st.Evidence["sshd.bypass"] != "user alice: publickey" {
		t.Fatalf("match block: %v %q %v", st.State, st.Detail, st.Evidence)
	}
	f.perUser = nil

	// Monitor: the drop-in goes, sshd is reloaded.
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: pol}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.dropIn); err == nil || f.reloads != 2 {
		t.Fatalf("monitor left the drop-in (reloads %d)", f.reloads)
	}

	// A file of the same name the agent did not write is never touched.
	os.WriteFile(f.dropIn, []byte("# the administrator's\nPubkeyAuthentication yes\n"), 0o644)
	if err := c.Apply(ctx, enforce(pol)); err == nil || !strings.Contains(err.Error(), "not written by the agent") {
		t.Fatalf("foreign file: %v", err)
	}
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: pol}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.dropIn); !strings.HasPrefix(string(b), "# the administrator's") {
		t.Fatalf("foreign file changed: %q", b)
	}
}
