package loginmfa_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
)

// TestAuthselectRealPAM runs RHEL's authselect profiles, as the agent
// rewrites them, through the real libpam with pamtester: the shapes of
// the sssd, local and winbind profiles' system-auth and password-auth
// (testdata/authselect), rewritten by loginmfa.RewriteAuthselect and
// rendered with the features a terminal would have, in a private mount
// namespace with a real verifier behind the real socket.
//
// What stands in for what (Debian has neither authselect nor sssd nor
// winbind): pam_sss.so and pam_winbind.so become pam_exec.so
// expose_authtok with a script that accepts the directory user's
// password (it asks for the password itself when pam_unix was skipped,
// like pam_sss forward_pass, and reads the one pam_unix took otherwise,
// like use_first_pass); the directory user is in /etc/passwd (so NSS
// knows it, as sssd would make it known) but not in the file
// pam_localuser reads (file=), and has no password pam_unix accepts.
// pam_faildelay's 2 s becomes 0.2 s. Every other module is the real one
// (pam_env, pam_faillock, pam_usertype, pam_localuser, pam_unix,
// pam_deny, pam_mamori.so built from agent/pam).
//
// For each stack: a wrong password gets no code prompt and the verifier
// records nothing; the right password and the right code succeed; the
// right password and a wrong code fail; and the same for the directory
// user, whose way through the stack skips pam_unix by a jump.
func TestAuthselectRealPAM(t *testing.T) {
	if os.Getenv(inNamespaceEnv) != "" {
		authselectInNamespace(t)
		return
	}
	runInNamespace(t, "TestAuthselectRealPAM")
}

const (
	remoteUser     = "mamoriremote"
	remotePassword = "directory pass 9"
)

func authselectInNamespace(t *testing.T) {
	tmp := os.Getenv("MAMORI_TEST_TMP")
	os.MkdirAll(filepath.Join(tmp, "ns"), 0o700)
	self, _ := os.Readlink("/proc/self/ns/mnt")
	init, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init {
		t.Fatalf("not in a private mount namespace: refusing to touch PAM")
	}
	for _, p := range hostFiles {
		bindCopy(t, tmp, p)
	}
	bindCopy(t, tmp, securityDir)
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, os.Getenv("MAMORI_TEST_SO"), filepath.Join(securityDir, "pam_mamori.so"), 0o644)
	hash := opensslHash(t, testPassword)
	appendFile(t, "/etc/passwd", testUser+":x:4242:4242::/nonexistent:/usr/sbin/nologin\n")
	appendFile(t, "/etc/group", testUser+":x:4242:\n")
	appendFile(t, "/etc/shadow", testUser+":"+hash+":20000:0:99999:7:::\n")
	// pam_localuser's file: the local users, not the directory user.
	localPasswd := filepath.Join(tmp, "local-passwd")
	copyFile(t, "/etc/passwd", localPasswd, 0o644)
	appendFile(t, "/etc/passwd", remoteUser+":x:4343:4343::/nonexistent:/usr/sbin/nologin\n")
	appendFile(t, "/etc/group", remoteUser+":x:4343:\n")
	appendFile(t, "/etc/shadow", remoteUser+":!:20000:0:99999:7:::\n")
	remoteAuth := filepath.Join(tmp, "directory-auth")
	script := "#!/bin/bash\nIFS= read -r -d '' pw\n[ \"$PAM_USER\" = " + remoteUser + " ] && [ \"$pw\" = '" + remotePassword + "' ]\n"
	if err := os.WriteFile(remoteAuth, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// stand puts the stand-ins in: the auth lines only, split into
	// type, control (a [...] group may hold blanks) and the rest.
	stand := func(rendered string) string {
		var out []string
		for _, l := range strings.Split(rendered, "\n") {
			if !strings.HasPrefix(l, "auth") {
				continue // only the auth stack is under test
			}
			rest := strings.TrimSpace(strings.TrimPrefix(l, "auth"))
			var ctl string
			if strings.HasPrefix(rest, "[") {
				i := strings.IndexByte(rest, ']')
				ctl, rest = rest[:i+1], strings.TrimSpace(rest[i+1:])
			} else {
				ctl, rest, _ = strings.Cut(rest, " ")
				rest = strings.TrimSpace(rest)
			}
			mod, _, _ := strings.Cut(rest, " ")
			switch mod {
			case "pam_sss.so", "pam_winbind.so":
				rest = "pam_exec.so expose_authtok quiet " + remoteAuth
			case "pam_localuser.so":
				rest += " file=" + localPasswd
			case "pam_faildelay.so":
				rest = strings.Replace(rest, "delay=2000000", "delay=200000", 1)
			}
			out = append(out, "auth "+ctl+" "+rest)
		}
		return strings.Join(out, "\n") + "\n"
	}

	for _, c := range []struct {
		profile, file string
		features      []string
		remote        bool // the profile has a directory module
	}{
		{"sssd", "system-auth", []string{"with-faillock"}, true},
		{"sssd", "password-auth", []string{"with-faillock"}, true},
		{"sssd", "system-auth", nil, true},
		{"local", "system-auth", []string{"with-faillock"}, false},
		{"local", "password-auth", nil, false},
		{"winbind", "system-auth", []string{"with-faillock"}, true},
		{"winbind", "password-auth", []string{"with-faillock"}, true},
	} {
		name := c.profile + "/" + c.file + "+" + strings.Join(c.features, ",")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata/authselect", c.profile, c.file))
			if err != nil {
				t.Fatal(err)
			}
			rw, _, err := loginmfa.RewriteAuthselect(in)
			if err != nil {
				t.Fatal(err)
			}
			r, err := loginmfa.RenderAuthselect(rw, append(c.features, loginmfa.AuthselectFeature))
			if err != nil {
				t.Fatal(err)
			}
			stack := stand(string(r))
			// RHEL's services use the file as a substack (login: auth
			// substack system-auth; sshd: auth substack password-auth).
			svc := "mamori-test-as"
			os.WriteFile("/etc/pam.d/"+c.file, []byte(stack), 0o644)
			os.WriteFile("/etc/pam.d/"+svc, []byte("auth substack "+c.file+"\naccount required pam_permit.so\n"), 0o644)
			os.RemoveAll("/run/faillock")
			// A fresh verifier for each stack: a TOTP code is accepted
			// once, and each stack logs both users in.
			events := &controltest.Emitter{}
			mcfg := mfa.DefaultConfig()
			mcfg.Dir, mcfg.Events = t.TempDir(), events
			v, err := mfa.Open(mcfg, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			local, remote := mfatest.NewUser(t, testUser), mfatest.NewUser(t, remoteUser)
			if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1.p1", local, remote)); err != nil {
				t.Fatal(err)
			}
			api := &localapi.Server{Path: localapi.DefaultSocket, Verifier: v, AllowUID: 0}
			if err := api.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer api.Stop()
			t.Logf("stack under test (%s):\n%s", name, stack)

			try := func(what, user, password, code string, wantOK, wantPrompt bool, wantEvent string) {
				t.Helper()
				events.Events() // forget earlier ones
				ok, out := pamLogin(t, svc, user, password, code)
				prompted := strings.Contains(out, "Verification code")
				if ok != wantOK || prompted != wantPrompt {
					t.Fatalf("%s: success=%v code prompt=%v, want %v %v\n%s", what, ok, prompted, wantOK, wantPrompt, out)
				}
				evs := events.Events()
				switch {
				case wantEvent == "" && len(evs) != 0:
					t.Fatalf("%s: the verifier recorded %+v", what, evs)
				case wantEvent != "" && (len(evs) != 1 || evs[0].Kind != wantEvent):
					t.Fatalf("%s: verifier events %+v, want one %s", what, evs, wantEvent)
				}
				t.Logf("%s: success=%v, code prompt=%v, verifier events %d", what, ok, prompted, len(evs))
			}
			now := time.Now()
			try("local user, wrong password", testUser, "wrong", "", false, false, "")
			try("local user, password + right code", testUser, testPassword, local.Code(now), true, true, mfa.KindSuccess)
			try("local user, password + wrong code", testUser, testPassword, "000000", false, true, mfa.KindFailure)
			try("local user, directory password", testUser, remotePassword, "", false, false, "")
			if c.remote {
				try("directory user, wrong password", remoteUser, "wrong", "", false, false, "")
				try("directory user, password + right code", remoteUser, remotePassword, remote.Code(now.Add(30*time.Second)), true, true, mfa.KindSuccess)
				try("directory user, password + wrong code", remoteUser, remotePassword, "000000", false, true, mfa.KindFailure)
				try("directory user, the code as password", remoteUser, remote.Code(now.Add(60*time.Second)), "", false, false, "")
			}
		})
	}
}

func opensslHash(t *testing.T, pw string) string {
	t.Helper()
	b, err := exec.Command("openssl", "passwd", "-6", "-salt", "mamoritest", pw).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
