package loginmfa_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestRealSSHDKeyBypass runs Debian's own sshd with Debian's default
// sshd_config (a copy of /etc/ssh, bind-mounted in a private mount
// namespace) and the real OpenSSH client: with pam_mamori.so required in
// the PAM stack, a key login still gets in without a code until the
// agent's sshd drop-in is in place, and the control says so.
func TestRealSSHDKeyBypass(t *testing.T) {
	if os.Getenv(inNamespaceEnv) == "" {
		testenv.LookPath(t, "ssh", "openssh-client")
		testenv.LookPath(t, "ssh-keygen", "openssh-client")
		runInNamespace(t, "TestRealSSHDKeyBypass")
		return
	}
	home := "/run/mamori-test-home" // on the namespace's /run tmpfs: the test's temp dir is 0700
	e := setupNamespace(t, "/bin/sh", home)
	ns := filepath.Join(e.tmp, "ns")
	if b, err := os.ReadFile("/etc/ssh/sshd_config"); err != nil || !bytes.Contains(b, []byte("Include /etc/ssh/sshd_config.d/*.conf")) {
		t.Fatalf("this test wants Debian's default sshd_config (with its Include): %v\n%s", err, b)
	}

	// The user's key, made by the real ssh-keygen, in ~/.ssh/authorized_keys
	// owned by the user (sshd's StrictModes stays on).
	key := filepath.Join(ns, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), pub, 0o600)
	for _, p := range []string{home, filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		os.Chown(p, 4242, 4242)
	}
	os.Chmod(home, 0o755)

	// sshd: Debian's sshd_config plus a test drop-in for port, host key and pid file.
	srv := startDebianSSHD(t, ns)

	// The PAM stack requires pam_mamori.so (enabled by hand here).
	if out, err := exec.Command("pam-auth-update", "--enable", "mamori").CombinedOutput(); err != nil {
		t.Fatalf("pam-auth-update: %v %s", err, out)
	}
	c := loginmfa.New(loginmfa.Options{Emitter: e.events, Users: e.v.Users})
	pol := func(mode mamoriv1.Mode, pamConfig string) *mamoriv1.ControlPolicy {
		so, _ := os.ReadFile(filepath.Join(securityDir, "pam_mamori.so"))
		return &mamoriv1.ControlPolicy{Mode: mode, Settings: map[string]string{
			"services": "sshd", "module_sha256": sha256Hex(so), "pam_config": pamConfig}}
	}
	ctx := t.Context()
	status := func(want mamoriv1.ControlState) *mamoriv1.ControlStatus {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != want {
			t.Fatalf("state %v, want %v: %s\n%v", st.State, want, st.Detail, st.Evidence)
		}
		return st
	}

	// 1. The bypass the issue found, for real: keys get in with no code.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, "manual")); err != nil {
		t.Fatal(err)
	}
	st := status(mamoriv1.ControlState_CONTROL_STATE_DEGRADED)
	if st.Evidence["service.sshd"] != "required" || st.Evidence["sshd.bypass"] != "publickey" {
		t.Fatalf("manual: %s %v", st.Detail, st.Evidence)
	}
	t.Logf("manual, Debian's default sshd_config: %s", st.Detail)
	if ok, out := srv.opensshKeyLogin(t, key); !ok {
		t.Fatalf("before the drop-in a key login should get in (that is the bypass being detected): %s", out)
	}
	if evs := e.events.Events(); len(evs) != 0 {
		t.Fatalf("a key login reached the verifier: %+v", evs)
	}
	t.Logf("OpenSSH key login without a code before the drop-in: got in (the bypass is real)")

	// 2. enforce + auto: the drop-in closes it; sshd was sent SIGHUP.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE, "auto")); err != nil {
		t.Fatal(err)
	}
	srv.waitReload(t)
	st = status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)
	if st.Evidence["sshd.drop_in"] != "true" || !strings.Contains(st.Evidence["pam_config"], "reloaded (SIGHUP") {
		t.Fatalf("auto: %v", st.Evidence)
	}
	if ok, out := srv.opensshKeyLogin(t, key); ok {
		t.Fatalf("key alone still gets in after the drop-in: %s", out)
	} else {
		t.Logf("OpenSSH key login without a code after the drop-in: refused: %s", strings.TrimSpace(out))
	}
	signer := loadSigner(t, key)
	// Each login uses the code of another 30 s step: a code once accepted
	// is refused again (replay), and the verifier accepts one step either side.
	step := -30 * time.Second
	code := func() string { step += 30 * time.Second; return e.user.Code(time.Now().Add(step)) }
	if ok, prompts := srv.keyThenKbd(t, signer, testPassword, code()); !ok {
		t.Fatalf("key + password + code refused (prompts %q)", prompts)
	}
	if ok, _ := srv.keyThenKbd(t, signer, testPassword, "000000"); ok {
		t.Fatal("key + password + wrong code got in")
	}
	if ok, prompts := srv.login(t, testUser, testPassword, code()); !ok {
		t.Fatalf("password + code (keyboard-interactive) refused (prompts %q)", prompts)
	}
	if evs := e.events.Events(); len(evs) < 3 || evs[0].Kind != mfa.KindSuccess || evs[0].Attrs["service"] != "sshd" {
		t.Fatalf("verifier events %+v", evs)
	}

	// 3. Why the second chain is keyboard-interactive and not the issue's
	// "password,keyboard-interactive": sshd's password method runs the
	// whole PAM stack and answers the code prompt with the password. A
	// Match block for the user with that chain is no bypass, and it lets
	// nobody in.
	srv.setMatch(t, "AuthenticationMethods password,keyboard-interactive\n  PasswordAuthentication yes")
	status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)
	if ok, _ := srv.passwordThenKbd(t, testPassword, code()); ok {
		t.Fatal("password,keyboard-interactive got in: the drop-in could use it")
	}
	t.Logf("password,keyboard-interactive with the right password and code: refused (sshd answers the code prompt with the password)")

	// 4. A Match block that lets keys in alone overrides the drop-in for
	// that user: the control names the user and fails.
	srv.setMatch(t, "AuthenticationMethods publickey")
	st = status(mamoriv1.ControlState_CONTROL_STATE_FAILED)
	if st.Evidence["sshd.bypass"] != "user "+testUser+": publickey" {
		t.Fatalf("match block: %s %v", st.Detail, st.Evidence)
	}
	if ok, out := srv.opensshKeyLogin(t, key); !ok {
		t.Fatalf("the Match block's bypass is real, but the key login failed: %s", out)
	}
	t.Logf("Match User %s / AuthenticationMethods publickey: %s", testUser, st.Detail)
	srv.setMatch(t, "")

	// 5. Monitor: the drop-in is removed and sshd reloaded.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR, "auto")); err != nil {
		t.Fatal(err)
	}
	srv.waitReload(t)
	if _, err := os.Stat(loginmfa.DropInPath); err == nil {
		t.Fatal("drop-in left after monitor")
	}
	status(mamoriv1.ControlState_CONTROL_STATE_MONITORING)
	if ok, out := srv.opensshKeyLogin(t, key); !ok {
		t.Fatalf("after revert, the key login (Debian's default) should work again: %s", out)
	}
}

func sha256Hex(b []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

type debianSSHD struct {
	sshd
	port    string
	pidFile string
	matchF  string
	logMu   *sync.Mutex
	log     *bytes.Buffer
	hups    int
}

func startDebianSSHD(t *testing.T, dir string) *debianSSHD {
	t.Helper()
	pubK, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := ssh.MarshalPrivateKey(priv, "mamori test host key")
	hk := filepath.Join(dir, "ssh_host_ed25519_key")
	os.WriteFile(hk, pem.EncodeToMemory(block), 0o600)
	hostKey, _ := ssh.NewPublicKey(pubK)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	s := &debianSSHD{sshd: sshd{addr: addr, hostKey: hostKey}, port: port, pidFile: filepath.Join(dir, "sshd.pid"),
		matchF: "/etc/ssh/sshd_config.d/90-mamori-test-match.conf", logMu: &sync.Mutex{}, log: &bytes.Buffer{}}
	os.WriteFile("/etc/ssh/sshd_config.d/10-mamori-test.conf", []byte(strings.Join([]string{
		"Port " + port, "ListenAddress 127.0.0.1", "HostKey " + hk, "PidFile " + s.pidFile, "LogLevel VERBOSE", "",
	}, "\n")), 0o644)
	os.MkdirAll("/run/sshd", 0o755)
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e")
	cmd.Stdout, cmd.Stderr = lockedWriter{s.logMu, s.log}, lockedWriter{s.logMu, s.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		s.logMu.Lock()
		t.Logf("sshd log:\n%s", s.log.String())
		s.logMu.Unlock()
	})
	s.waitListen(t)
	return s
}

func (s *debianSSHD) waitListen(t *testing.T) {
	t.Helper()
	for start := time.Now(); ; {
		if _, err := os.Stat(s.pidFile); err == nil {
			if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
				c.Close()
				return
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("sshd did not listen on %s", s.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReload waits until sshd logged one more SIGHUP restart and listens again.
func (s *debianSSHD) waitReload(t *testing.T) {
	t.Helper()
	s.hups++
	for start := time.Now(); ; {
		s.logMu.Lock()
		n := strings.Count(s.log.String(), "Received SIGHUP; restarting.")
		s.logMu.Unlock()
		if n >= s.hups {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("sshd was not reloaded (%d SIGHUPs logged, want %d)", n, s.hups)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.waitListen(t)
}

// setMatch writes (or with "" removes) a Match User block for the test
// user and reloads sshd itself.
func (s *debianSSHD) setMatch(t *testing.T, body string) {
	t.Helper()
	if body == "" {
		os.Remove(s.matchF)
	} else {
		os.WriteFile(s.matchF, []byte("Match User "+testUser+"\n  "+body+"\n"), 0o644)
	}
	if out, err := exec.Command("/usr/sbin/sshd", "-t").CombinedOutput(); err != nil {
		t.Fatalf("sshd -t with the Match block: %v %s", err, out)
	}
	b, _ := os.ReadFile(s.pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitReload(t)
}

// opensshKeyLogin runs the real OpenSSH client with the key only
// (BatchMode: it cannot answer a prompt) and a command.
func (s *debianSSHD) opensshKeyLogin(t *testing.T, key string) (bool, string) {
	t.Helper()
	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
		"-p", s.port, testUser+"@127.0.0.1", "echo mamori-ran-$((6*7))")
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), "mamori-ran-42"), string(out)
}

func loadSigner(t *testing.T, key string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

func (s *debianSSHD) dial(t *testing.T, auth ...ssh.AuthMethod) bool {
	t.Helper()
	cfg := &ssh.ClientConfig{User: testUser, HostKeyCallback: ssh.FixedHostKey(s.hostKey), Timeout: 20 * time.Second, Auth: auth}
	c, err := ssh.Dial("tcp", s.addr, cfg)
	if err != nil {
		if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("ssh: %v", err)
		}
		return false
	}
	c.Close()
	return true
}

func answer(prompts *[]string, password, code string) ssh.KeyboardInteractiveChallenge {
	return func(_, _ string, qs []string, _ []bool) ([]string, error) {
		ans := make([]string, len(qs))
		for i, q := range qs {
			*prompts = append(*prompts, q)
			switch {
			case strings.Contains(q, "Password"):
				ans[i] = password
			case strings.Contains(q, "Verification code"):
				ans[i] = code
			default:
				return nil, fmt.Errorf("unexpected prompt %q", q)
			}
		}
		return ans, nil
	}
}

func (s *debianSSHD) keyThenKbd(t *testing.T, sg ssh.Signer, password, code string) (bool, []string) {
	var prompts []string
	return s.dial(t, ssh.PublicKeys(sg), ssh.RetryableAuthMethod(ssh.KeyboardInteractive(answer(&prompts, password, code)), 1)), prompts
}

func (s *debianSSHD) passwordThenKbd(t *testing.T, password, code string) (bool, []string) {
	var prompts []string
	return s.dial(t, ssh.Password(password), ssh.RetryableAuthMethod(ssh.KeyboardInteractive(answer(&prompts, password, code)), 1)), prompts
}
