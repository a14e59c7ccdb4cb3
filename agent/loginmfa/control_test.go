package loginmfa_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

const commonAuthEnabled = `auth	[success=1 default=ignore]	pam_unix.so nullok
auth	requisite			pam_deny.so
auth	required			pam_permit.so
auth	required			pam_mamori.so
`

// fakeRoot is a captured terminal: /etc/pam.d, the module and the hash
// record the package installs.
type fakeRoot struct {
	dir    string
	module []byte
}

func newRoot(t *testing.T, commonAuth string) *fakeRoot {
	t.Helper()
	r := &fakeRoot{dir: t.TempDir(), module: []byte("\x7fELF pam_mamori test bytes")}
	r.write(t, "etc/pam.d/common-auth", commonAuth)
	r.write(t, "etc/pam.d/login", "auth requisite pam_nologin.so\n@include common-auth\n")
	r.write(t, "etc/pam.d/other", "@include common-auth\n")
	r.write(t, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so", string(r.module))
	sum := sha256.Sum256(r.module)
	r.write(t, "usr/share/mamori-agent/pam_mamori.so.sha256", hex.EncodeToString(sum[:])+"  pam_mamori.so\n")
	return r
}

func (r *fakeRoot) write(t *testing.T, p, s string) {
	t.Helper()
	p = filepath.Join(r.dir, p)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// recorder stands in for pam-auth-update/authselect where a test is about
// what the agent refuses to run; the real tools run in
// TestRealPAMEnableDisable.
type recorder struct{ calls []string }

func (r *recorder) run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	return nil, nil
}

func newControl(r *fakeRoot, ev *controltest.Emitter, users []string, tools ...string) (*loginmfa.Control, *recorder) {
	rec := &recorder{}
	yes := true
	c := loginmfa.New(loginmfa.Options{Root: r.dir, Emitter: ev, Users: func() []string { return users },
		TPMPresent: func() bool { return false }, Run: rec.run, Supported: &yes,
		ModuleDirs: []string{"usr/lib/x86_64-linux-gnu/security"},
		LookPath: func(p string) (string, error) {
			for _, x := range tools {
				if x == p {
					return "/usr/sbin/" + p, nil
				}
			}
			return "", errors.New("not found")
		}})
	return c, rec
}

func enforce(settings map[string]string) *mamoriv1.ControlPolicy {
	return &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: settings}
}

func status(t *testing.T, c *loginmfa.Control, want mamoriv1.ControlState, detail string) *mamoriv1.ControlStatus {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != want || !strings.Contains(st.Detail, detail) {
		t.Fatalf("state %v %q; want %v containing %q\nevidence %v", st.State, st.Detail, want, detail, st.Evidence)
	}
	return st
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	ev := &controltest.Emitter{}

	t.Run("enforced with the package's hash", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		c, rec := newControl(r, ev, []string{"tanaka"}, "pam-auth-update")
		r.write(t, "var/lib/pam/auth", "Module: unix\nModule: mamori\nrequired pam_mamori.so\n")
		if err := c.Apply(ctx, enforce(map[string]string{"services": "login,sshd"})); err != nil {
			t.Fatal(err)
		}
		if len(rec.calls) != 0 {
			t.Fatalf("ran %v although the stack was in place", rec.calls)
		}
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "module verified")
		for k, want := range map[string]string{"service.login": "required", "service.sshd": "required (no file: PAM uses other)",
			"module.expected_from": loginmfa.HashFile, "enrolled_users": "1", "tpm_present": "false",
			"module.path": "/usr/lib/x86_64-linux-gnu/security/pam_mamori.so"} {
			if st.Evidence[k] != want {
				t.Errorf("evidence %s = %q, want %q", k, st.Evidence[k], want)
			}
		}
	})
	t.Run("grace logins make it not compliant", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		yes := true
		c := loginmfa.New(loginmfa.Options{Root: r.dir, Emitter: ev, Users: func() []string { return []string{"tanaka"} },
			GraceUsers: func() []string { return []string{"sato", "suzuki"} },
			TPMPresent: func() bool { return false }, Run: (&recorder{}).run, Supported: &yes,
			ModuleDirs: []string{"usr/lib/x86_64-linux-gnu/security"},
			LookPath:   func(string) (string, error) { return "", errors.New("not found") }})
		if err := c.Apply(ctx, enforce(map[string]string{"services": "login", "pam_config": "manual"})); err != nil {
			t.Fatal(err)
		}
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "2 user(s) logged in without a second factor")
		if st.Evidence["grace_logins"] != "2" || !strings.Contains(st.Detail, "sato, suzuki") {
			t.Fatalf("grace evidence %v, detail %q", st.Evidence, st.Detail)
		}
	})
	t.Run("covered by hand: the tool is not run", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		c, rec := newControl(r, ev, []string{"tanaka"}, "pam-auth-update")
		if err := c.Apply(ctx, enforce(map[string]string{"services": "login"})); err != nil {
			t.Fatal(err)
		}
		if len(rec.calls) != 0 {
			t.Fatalf("ran %v: a second pam_mamori.so line would ask for the code twice", rec.calls)
		}
		// Monitor does not revert lines the agent did not add.
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil || len(rec.calls) != 0 {
			t.Fatalf("monitor: %v, ran %v", err, rec.calls)
		}
	})
	t.Run("module replaced", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		r.write(t, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so", "something else")
		c, _ := newControl(r, ev, []string{"tanaka"})
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual"}))
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "not the expected one")
	})
	t.Run("policy hash wins over the package's", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		c, _ := newControl(r, ev, []string{"tanaka"})
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual", "module_sha256": strings.Repeat("ab", 32)}))
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "not the expected one")
		if st.Evidence["module.expected_from"] != "policy" {
			t.Fatal(st.Evidence)
		}
	})
	t.Run("no expected hash", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		os.Remove(filepath.Join(r.dir, "usr/share/mamori-agent/pam_mamori.so.sha256"))
		c, _ := newControl(r, ev, []string{"tanaka"})
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual", "services": "login"}))
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "no expected SHA-256")
	})
	t.Run("module missing", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		os.Remove(filepath.Join(r.dir, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so"))
		c, _ := newControl(r, ev, []string{"tanaka"})
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual", "services": "login"}))
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "unreadable")
	})
	t.Run("module in a directory libpam does not read", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		os.Remove(filepath.Join(r.dir, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so"))
		r.write(t, "usr/lib64/security/pam_mamori.so", string(r.module))
		yes := true
		c := loginmfa.New(loginmfa.Options{Root: r.dir, Emitter: ev, Users: func() []string { return []string{"tanaka"} }, Supported: &yes,
			ModuleDirs: []string{"usr/lib/x86_64-linux-gnu/security", "usr/lib64/security"}, LookPath: func(string) (string, error) { return "", errors.New("no") }})
		c.Apply(ctx, enforce(map[string]string{"services": "login"}))
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "unreadable")
		if st.Evidence["module.path"] != "/usr/lib/x86_64-linux-gnu/security/pam_mamori.so" {
			t.Fatal(st.Evidence)
		}
	})
	t.Run("no users", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled)
		c, _ := newControl(r, ev, nil)
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual", "services": "login"}))
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "no users enrolled")
	})
	t.Run("absent, no tool: manual path", func(t *testing.T) {
		r := newRoot(t, "auth required pam_unix.so\n")
		c, rec := newControl(r, ev, []string{"tanaka"})
		if err := c.Apply(ctx, enforce(nil)); err != nil {
			t.Fatal(err)
		}
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "add `auth required pam_mamori.so`")
		if len(rec.calls) != 0 || !strings.HasPrefix(st.Evidence["pam_config"], "manual") {
			t.Fatalf("calls %v evidence %v", rec.calls, st.Evidence)
		}
	})
	t.Run("bad setting fails closed", func(t *testing.T) {
		r := newRoot(t, "auth required pam_unix.so\n")
		c, rec := newControl(r, ev, []string{"tanaka"}, "pam-auth-update")
		if err := c.Apply(ctx, enforce(map[string]string{"services": "login,../x", "pam_config": "auto"})); err == nil {
			t.Fatal("bad services accepted")
		}
		if len(rec.calls) != 0 {
			t.Fatalf("changed PAM on a bad setting: %v", rec.calls)
		}
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "not a PAM service name")
	})
	t.Run("broken include is not covered", func(t *testing.T) {
		r := newRoot(t, commonAuthEnabled+"@include common-mamori-missing\n")
		c, _ := newControl(r, ev, []string{"tanaka"})
		c.Apply(ctx, enforce(map[string]string{"pam_config": "manual", "services": "login"}))
		st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, "every login to these services fails: login (etc/pam.d/common-auth:5")
		if !strings.HasPrefix(st.Evidence["service.login"], "broken: ") {
			t.Fatal(st.Evidence)
		}
	})
	t.Run("not named", func(t *testing.T) {
		c, _ := newControl(newRoot(t, ""), ev, nil)
		c.Apply(ctx, nil)
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE, "does not name")
	})
	t.Run("windows", func(t *testing.T) {
		no := false
		c := loginmfa.New(loginmfa.Options{Emitter: ev, Supported: &no})
		if err := c.Apply(ctx, enforce(nil)); err != nil {
			t.Fatal(err)
		}
		status(t, c, mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE, "no credential provider wired")
	})
}

// TestEnableRefusesToLockEveryoneOut: with the module missing, or a
// verifier without users, the agent does not run pam-auth-update.
func TestEnableRefusesToLockEveryoneOut(t *testing.T) {
	ctx := context.Background()
	ev := &controltest.Emitter{}
	for _, tt := range []struct {
		name  string
		users []string
		prep  func(r *fakeRoot)
		want  string
	}{
		{"no users", nil, func(*fakeRoot) {}, "no user is enrolled"},
		{"module missing", []string{"tanaka"}, func(r *fakeRoot) {
			os.Remove(filepath.Join(r.dir, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so"))
		}, "module is not installed"},
		{"module differs", []string{"tanaka"}, func(r *fakeRoot) {
			os.WriteFile(filepath.Join(r.dir, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so"), []byte("x"), 0o644)
		}, "not the expected one"},
		{"profile missing", []string{"tanaka"}, func(*fakeRoot) {}, "profile /usr/share/pam-configs/mamori missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t, "auth required pam_unix.so\n")
			tt.prep(r)
			c, rec := newControl(r, ev, tt.users, "pam-auth-update")
			err := c.Apply(ctx, enforce(map[string]string{"services": "login"}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v; want %q", err, tt.want)
			}
			if len(rec.calls) != 0 {
				t.Fatalf("ran %v", rec.calls)
			}
			status(t, c, mamoriv1.ControlState_CONTROL_STATE_FAILED, tt.want)
		})
	}
}

func TestMonitorWouldRefuse(t *testing.T) {
	ctx := context.Background()
	r := newRoot(t, "auth required pam_unix.so\n")
	ev := &controltest.Emitter{}
	c, rec := newControl(r, ev, []string{"tanaka"}, "pam-auth-update")
	wtmp := filepath.Join(r.dir, "var/log/wtmp")
	os.MkdirAll(filepath.Dir(wtmp), 0o755)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	old := loginmfa.AppendUtmp(nil, loginmfa.Login{User: "before", Line: "tty1", At: at})
	os.WriteFile(wtmp, old, 0o644)
	mon := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}
	if err := c.Apply(ctx, mon); err != nil { // notes where wtmp ends
		t.Fatal(err)
	}
	more := loginmfa.AppendUtmp(nil, loginmfa.Login{User: "tanaka", Line: "pts/0", Host: "192.0.2.1", At: at.Add(time.Minute)})
	more = loginmfa.AppendUtmp(more, loginmfa.Login{User: "suzuki", Line: "pts/1", Host: "192.0.2.9", At: at.Add(2 * time.Minute)})
	more = append(more, make([]byte, 100)...) // a record being written
	f, _ := os.OpenFile(wtmp, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(more)
	f.Close()
	if err := c.Apply(ctx, mon); err != nil {
		t.Fatal(err)
	}
	evs := ev.Events()
	if len(evs) != 1 || evs[0].Kind != loginmfa.KindWouldRefuse || evs[0].Attrs["user"] != "suzuki" ||
		evs[0].Attrs["host"] != "192.0.2.9" || evs[0].Attrs["reason"] != "not_enrolled" || evs[0].Control != "login-mfa" {
		t.Fatalf("events %+v", evs)
	}
	c.Apply(ctx, mon)
	if evs := ev.Events(); len(evs) != 0 {
		t.Fatalf("reported again: %+v", evs)
	}
	// An event that cannot be recorded is retried from that record, and
	// the ones before it are not reported twice.
	f, _ = os.OpenFile(wtmp, os.O_WRONLY, 0)
	fi, _ := f.Stat()
	f.Truncate(fi.Size() - 100) // drop the partial record
	f.Close()
	two := loginmfa.AppendUtmp(nil, loginmfa.Login{User: "sato", Line: "pts/2", At: at.Add(3 * time.Minute)})
	two = loginmfa.AppendUtmp(two, loginmfa.Login{User: "ito", Line: "pts/3", At: at.Add(4 * time.Minute)})
	f, _ = os.OpenFile(wtmp, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(two)
	f.Close()
	ev.SetErr(errors.New("spool full"))
	c.Apply(ctx, mon)
	ev.SetErr(nil)
	c.Apply(ctx, mon)
	if evs := ev.Events(); len(evs) != 2 || evs[0].Attrs["user"] != "sato" || evs[1].Attrs["user"] != "ito" {
		t.Fatalf("after a failed emit: %+v", evs)
	}
	st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_MONITORING, "3 login(s)")
	if st.Evidence["would_refuse"] != "3" || len(rec.calls) != 0 {
		t.Fatalf("evidence %v calls %v", st.Evidence, rec.calls)
	}
}

// rhelSystemAuth is the shape of authselect's sssd profile (RHEL 9), the
// lines that matter for the stack rule.
const rhelSystemAuth = `auth        required                                     pam_env.so
auth        required                                     pam_faildelay.so delay=2000000
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        [default=1 ignore=ignore success=ok]         pam_localuser.so
auth        sufficient                                   pam_unix.so nullok
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        sufficient                                   pam_sss.so forward_pass
auth        required                                     pam_deny.so
`

// authselectSim stands in for authselect, which does not exist on Debian:
// it records the commands and renders the profile the way `authselect
// select` does (loginmfa.RenderAuthselect: the template operators of
// authselect-profiles(5)). create-profile copies the sssd profile's shape
// (testdata/authselect).
// What it checks is the agent's side: the commands, their order, and that
// the profile it edits is covered by the stack rule once selected.
type authselectSim struct {
	t     *testing.T
	root  string
	calls []string
	cur   string
}

func (a *authselectSim) run(_ context.Context, name string, args ...string) ([]byte, error) {
	a.calls = append(a.calls, name+" "+strings.Join(args, " "))
	if name != "authselect" {
		return nil, errors.New("unexpected " + name)
	}
	custom := filepath.Join(a.root, "etc/authselect/custom/mamori")
	switch args[0] {
	case "current":
		return []byte(a.cur + "\n"), nil
	case "create-profile":
		os.MkdirAll(custom, 0o755)
		for _, f := range []string{"system-auth", "password-auth"} {
			b, err := os.ReadFile(filepath.Join("testdata/authselect/sssd", f))
			if err != nil {
				a.t.Fatal(err)
			}
			os.WriteFile(filepath.Join(custom, f), b, 0o644)
		}
	case "select", "disable-feature":
		if args[0] == "select" {
			a.cur = strings.Join(args[1:], " ")
		} else {
			a.cur = strings.ReplaceAll(a.cur, " "+args[1], "")
		}
		for _, f := range []string{"system-auth", "password-auth"} {
			b, _ := os.ReadFile(filepath.Join(custom, f))
			out, err := loginmfa.RenderAuthselect(b, strings.Fields(a.cur)[1:])
			if err != nil {
				return nil, err
			}
			os.WriteFile(filepath.Join(a.root, "etc/pam.d", f), out, 0o644)
		}
	}
	return nil, nil
}

func TestAuthselectPath(t *testing.T) {
	ctx := context.Background()
	r := newRoot(t, "")
	r.write(t, "etc/pam.d/login", "auth substack system-auth\n")
	r.write(t, "etc/pam.d/sshd", "auth substack password-auth\n")
	r.write(t, "etc/pam.d/system-auth", rhelSystemAuth)
	r.write(t, "etc/pam.d/password-auth", rhelSystemAuth)
	r.write(t, "usr/lib64/security/pam_mamori.so", string(r.module))
	sim := &authselectSim{t: t, root: r.dir, cur: "sssd with-faillock"}
	yes := true
	c := loginmfa.New(loginmfa.Options{Root: r.dir, Emitter: &controltest.Emitter{}, Users: func() []string { return []string{"tanaka"} },
		Run: sim.run, Supported: &yes, ModuleDirs: []string{"usr/lib64/security"},
		LookPath: func(p string) (string, error) {
			if p == "authselect" {
				return "/usr/bin/authselect", nil
			}
			return "", errors.New("not found")
		}})
	pol := enforce(map[string]string{"services": "login,sshd"})
	if err := c.Apply(ctx, pol); err != nil {
		t.Fatalf("enable: %v\ncalls %q", err, sim.calls)
	}
	want := []string{"authselect current --raw", "authselect create-profile mamori --base-on=sssd --symlink-meta --symlink-nsswitch --symlink-dconf",
		"authselect select custom/mamori with-faillock with-mamori"}
	if strings.Join(sim.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q\nwant %q", sim.calls, want)
	}
	st := status(t, c, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "module verified")
	if st.Evidence["service.login"] != "required" || st.Evidence["service.sshd"] != "required" {
		t.Fatal(st.Evidence)
	}
	// Password first: the code follows pam_unix.so (and pam_sss.so).
	sa, _ := os.ReadFile(filepath.Join(r.dir, "etc/pam.d/system-auth"))
	if u, m := strings.Index(string(sa), "pam_unix.so"), strings.Index(string(sa), "pam_mamori.so"); u < 0 || m < u {
		t.Fatalf("pam_mamori.so not after pam_unix.so:\n%s", sa)
	}
	sim.calls = nil
	if err := c.Apply(ctx, pol); err != nil || len(sim.calls) != 0 {
		t.Fatalf("second round: %v, ran %q", err, sim.calls)
	}
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sim.calls, "|"); got != "authselect current --raw|authselect disable-feature with-mamori" {
		t.Fatalf("revert calls %q", got)
	}
	b, _ := os.ReadFile(filepath.Join(r.dir, "etc/pam.d/system-auth"))
	if strings.Contains(string(b), "pam_mamori") {
		t.Fatalf("still in system-auth:\n%s", b)
	}
}
