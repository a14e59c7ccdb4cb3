package loginmfa_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/agent/pam/pamtest"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// The real-PAM test runs the real pam-auth-update against this machine's
// PAM configuration — inside a private mount namespace (unshare -m) where
// /etc, /var/lib/pam, /usr/share/pam-configs, the debconf database and
// the PAM module directory are bind-mounted copies and /run is a fresh
// tmpfs. The host's files are never written; the parent test checks that
// by hashing them before and after.
//
// All of /etc is copied, not /etc/passwd, /etc/shadow and /etc/group one
// by one: a bind mount over a single file is lost when the host replaces
// that file by rename (useradd does; agent/pam/pamtest's sshd test runs
// it in parallel), and the test user then vanished from the namespace in
// the middle of the test — CI saw "password alone after revert" fail so.

const inNamespaceEnv = "MAMORI_LOGINMFA_IN_NAMESPACE"

// hostFiles are what pam-auth-update and the test could touch.
var hostFiles = []string{"/etc", "/var/lib/pam", "/usr/share/pam-configs", "/var/cache/debconf"}

func digestTree(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				out[p] = "error: " + err.Error()
				return nil
			}
			if strings.HasPrefix(d.Name(), "mamori-test-") {
				return nil // other packages' tests come and go (agent/pam/pamtest)
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				sum := sha256.Sum256(b)
				out[p] = fmt.Sprintf("%v %x", fi.Mode(), sum)
			} else {
				out[p] = fi.Mode().String()
			}
			return nil
		})
	}
	return out
}

func TestRealPAMEnableDisable(t *testing.T) {
	if os.Getenv(inNamespaceEnv) != "" {
		inNamespace(t)
		return
	}
	runInNamespace(t, "TestRealPAMEnableDisable")
}

// runInNamespace runs the named test again in a private mount namespace
// with the module built and checks that the host's files are unchanged.
func runInNamespace(t *testing.T, name string) {
	t.Helper()
	testenv.Short(t)
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare", "util-linux")
	testenv.LookPath(t, "pam-auth-update", "libpam-runtime")
	testenv.LookPath(t, "pamtester", "pamtester")
	testenv.LookPath(t, "gcc", "gcc")
	testenv.LookPath(t, "openssl", "openssl")
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		testenv.Unavailable(t, "/usr/sbin/sshd missing (apt-get install openssh-server)")
	}
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		testenv.Unavailable(t, "PAM headers missing (Debian: libpam0g-dev)")
	}
	if _, err := os.Stat(securityDir); err != nil {
		testenv.Unavailable(t, "no PAM module directory "+securityDir+" (this test knows Debian's amd64 layout)")
	}
	tmp := t.TempDir()
	so := filepath.Join(tmp, "pam_mamori.so")
	if err := pamtest.Build(so); err != nil {
		t.Fatal(err)
	}
	profile, err := filepath.Abs("../../installer/packaging/linux/pam-configs-mamori")
	if err != nil {
		t.Fatal(err)
	}
	before := hostState(t)
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "--",
		os.Args[0], "-test.run", "^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1", "MAMORI_TEST_SO="+so, "MAMORI_TEST_PROFILE="+profile, "MAMORI_TEST_TMP="+tmp)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the mount namespace:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Errorf("namespace run failed: %v", err)
	}
	after := hostState(t)
	for p, b := range before {
		if after[p] != b {
			t.Errorf("host changed: %s", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("host file appeared: %s", p)
		}
	}
	if len(before) < 8 {
		t.Fatalf("digest of the host's PAM files looks empty: %v", before)
	}
}

// hostState is what the test could change on the host: the files
// pam-auth-update writes (/etc/pam.d/common-*, /var/lib/pam), the profile
// and module the test puts in place, pam-auth-update's answer in debconf,
// and any trace of the test user. Other tests on the machine create their
// own /etc/pam.d services, add users and install packages meanwhile, so
// whole directories and whole shared files are not compared.
func hostState(t *testing.T) map[string]string {
	t.Helper()
	m := digestTree(t, "/var/lib/pam", "/etc/ssh")
	commons, _ := filepath.Glob("/etc/pam.d/common-*")
	for p, v := range digestTree(t, commons...) {
		m[p] = v
	}
	for _, p := range []string{"/usr/share/pam-configs/mamori", filepath.Join(securityDir, "pam_mamori.so")} {
		_, err := os.Stat(p)
		m[p+" exists"] = fmt.Sprint(err == nil)
	}
	for _, f := range []string{"/etc/passwd", "/etc/shadow", "/etc/group"} {
		b, _ := os.ReadFile(f)
		m[f+" mentions "+testUser] = fmt.Sprint(bytes.Contains(b, []byte(testUser)))
	}
	b, _ := os.ReadFile("/var/cache/debconf/config.dat")
	if i := bytes.Index(b, []byte("Name: libpam-runtime/profiles\n")); i >= 0 {
		stanza, _, _ := bytes.Cut(b[i:], []byte("\n\n"))
		m["debconf libpam-runtime/profiles"] = string(stanza)
	}
	return m
}

const securityDir = "/usr/lib/x86_64-linux-gnu/security"

// bindCopy copies src into the test's directory and bind-mounts the copy
// over src (in this process's private mount namespace).
func bindCopy(t *testing.T, tmp, src string) string {
	t.Helper()
	dst := filepath.Join(tmp, "ns", strings.ReplaceAll(strings.Trim(src, "/"), "/", "_"))
	if err := copyTree(src, dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	if err := syscall.Mount(dst, src, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s: %v", src, err)
	}
	return dst
}

// copyTree copies src to dst keeping modes and owners (sshd checks both
// on its host keys). It is not cp -a because the host keeps writing /etc
// meanwhile: a lock file or a temporary that vanishes between the
// directory read and the open is skipped, not an error.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := os.Mkdir(to, fi.Mode().Perm()); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				return err
			}
			if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil // sockets and fifos: nothing PAM reads
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return os.Chmod(to, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
}

const (
	testUser     = "mamoritest"
	testPassword = "correct horse 7"
)

// nsEnv is what setupNamespace made: a real verifier behind the real
// socket holding the test user's secret.
type nsEnv struct {
	tmp    string
	v      *mfa.Verifier
	user   mfatest.User
	events *controltest.Emitter
}

func setupNamespace(t *testing.T, shell, home string) nsEnv {
	tmp := os.Getenv("MAMORI_TEST_TMP")
	os.MkdirAll(filepath.Join(tmp, "ns"), 0o700)
	// Refuse to run outside a private mount namespace: compare with PID 1's.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	init, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init {
		t.Fatalf("not in a private mount namespace (%q vs init %q): refusing to touch PAM", self, init)
	}
	for _, p := range hostFiles {
		bindCopy(t, tmp, p)
	}
	bindCopy(t, tmp, securityDir)
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, os.Getenv("MAMORI_TEST_SO"), filepath.Join(securityDir, "pam_mamori.so"), 0o644)
	copyFile(t, os.Getenv("MAMORI_TEST_PROFILE"), "/usr/share/pam-configs/mamori", 0o644)
	hash, err := exec.Command("openssl", "passwd", "-6", "-salt", "mamoritest", testPassword).Output()
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, "/etc/passwd", testUser+":x:4242:4242::"+home+":"+shell+"\n")
	appendFile(t, "/etc/group", testUser+":x:4242:\n")
	appendFile(t, "/etc/shadow", testUser+":"+strings.TrimSpace(string(hash))+":20000:0:99999:7:::\n")

	// A real verifier holding a known secret behind the real socket at the
	// module's default path.
	events := &controltest.Emitter{}
	mcfg := mfa.DefaultConfig()
	mcfg.Dir, mcfg.Events = filepath.Join(tmp, "mfa"), events
	v, err := mfa.Open(mcfg, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	user := mfatest.NewUser(t, testUser)
	if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1.p1", user)); err != nil {
		t.Fatal(err)
	}
	api := &localapi.Server{Path: localapi.DefaultSocket, Verifier: v, AllowUID: 0}
	if err := api.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)
	return nsEnv{tmp: tmp, v: v, user: user, events: events}
}

func inNamespace(t *testing.T) {
	e := setupNamespace(t, "/usr/sbin/nologin", "/nonexistent")
	tmp, v, user, events := e.tmp, e.v, e.user, e.events
	so, _ := os.ReadFile(filepath.Join(securityDir, "pam_mamori.so"))
	sum := sha256.Sum256(so)
	c := loginmfa.New(loginmfa.Options{Emitter: events, Users: v.Users})
	pol := func(mode mamoriv1.Mode) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mode, Settings: map[string]string{
			"services": "login,su,sshd", "module_sha256": hex.EncodeToString(sum[:])}}
	}
	status := func(want mamoriv1.ControlState) *mamoriv1.ControlStatus {
		t.Helper()
		st, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.State != want {
			t.Fatalf("state %v, want %v: %s\n%v", st.State, want, st.Detail, st.Evidence)
		}
		return st
	}
	ctx := t.Context()

	// Enforce: the agent runs pam-auth-update --enable mamori and reads
	// the stacks again. su has `auth sufficient pam_rootok.so` first: root
	// gets in without a code, so su cannot be covered through common-auth
	// and the verification must say so.
	start := time.Now()
	err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE))
	t.Logf("enable (pam-auth-update --enable + verify) took %v", time.Since(start).Round(time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "su: succeeds without pam_mamori.so: su:") {
		t.Fatalf("enable with su named: %v", err)
	}
	t.Logf("enable with su named: %v", err)
	// The next round does not run pam-auth-update again; it says why.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_ENFORCE)); err == nil || !strings.Contains(err.Error(), "su:") {
		t.Fatalf("second round: %v", err)
	}
	auth, _ := os.ReadFile("/etc/pam.d/common-auth")
	if !bytes.Contains(auth, []byte("pam_mamori.so")) {
		t.Fatalf("common-auth after enable:\n%s", auth)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(st.Evidence["service.su"], "pam_rootok.so success→done") {
		t.Fatalf("su: state %v %s\n%v", st.State, st.Detail, st.Evidence)
	}
	if st.Evidence["service.login"] != "required" || !strings.HasPrefix(st.Evidence["service.sshd"], "required") {
		t.Fatalf("evidence %v", st.Evidence)
	}
	t.Logf("su: %s", st.Evidence["service.su"])
	p := pol(mamoriv1.Mode_MODE_ENFORCE)
	p.Settings["services"] = "login,sshd"
	if err := c.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	st = status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)
	t.Logf("enforced (status read in %v): %s %v", time.Since(start).Round(time.Microsecond), st.Detail, st.Evidence)

	now := time.Now()
	login := func(name, code string, wantOK bool) {
		t.Helper()
		start := time.Now()
		ok, out := pamLogin(t, "login", testUser, testPassword, code)
		if ok != wantOK {
			t.Fatalf("%s: success=%v, want %v\n%s", name, ok, wantOK, out)
		}
		t.Logf("%s: success=%v in %v", name, ok, time.Since(start).Round(time.Millisecond))
	}
	login("password + right code", user.Code(now), true)
	login("password + wrong code", "000000", false)
	if evs := events.Events(); len(evs) != 2 || evs[0].Kind != mfa.KindSuccess || evs[1].Kind != mfa.KindFailure || evs[0].Attrs["service"] != "login" {
		t.Fatalf("verifier events %+v", evs)
	}

	// The same through a real sshd (keyboard-interactive): pam_mamori.so
	// came in through common-auth, which sshd's stack includes.
	srv := startSSHD(t, filepath.Join(tmp, "ns"))
	sshLogin := func(name, code string, wantOK bool) {
		t.Helper()
		start := time.Now()
		ok, prompts := srv.login(t, testUser, testPassword, code)
		if ok != wantOK {
			t.Fatalf("sshd, %s: success=%v, want %v (prompts %q)", name, ok, wantOK, prompts)
		}
		t.Logf("sshd, %s: success=%v in %v, prompts %q", name, ok, time.Since(start).Round(time.Millisecond), prompts)
	}
	sshLogin("password + right code", user.Code(time.Now().Add(30*time.Second)), true)
	sshLogin("password + wrong code", "000000", false)
	if evs := events.Events(); len(evs) != 2 || evs[0].Kind != mfa.KindSuccess || evs[0].Attrs["service"] != "sshd" || evs[0].Attrs["rhost"] != "127.0.0.1" {
		t.Fatalf("verifier events over sshd %+v", evs)
	}

	// Monitor: reverted with pam-auth-update --remove, PAM otherwise alone.
	start = time.Now()
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR)); err != nil {
		t.Fatalf("revert: %v", err)
	}
	t.Logf("revert (pam-auth-update --remove) took %v", time.Since(start).Round(time.Millisecond))
	auth, _ = os.ReadFile("/etc/pam.d/common-auth")
	if bytes.Contains(auth, []byte("pam_mamori.so")) {
		t.Fatalf("common-auth still names pam_mamori.so after revert:\n%s", auth)
	}
	st = status(mamoriv1.ControlState_CONTROL_STATE_MONITORING)
	if !strings.HasPrefix(st.Evidence["pam_config"], "reverted") {
		t.Fatalf("evidence %v", st.Evidence)
	}
	ok, out := pamLogin(t, "login", testUser, testPassword, "")
	if !ok || strings.Contains(out, "Verification code") {
		t.Fatalf("password alone after revert: success=%v\n%s", ok, out)
	}
	t.Logf("password alone after revert: success")
	ok, prompts := srv.login(t, testUser, testPassword, "")
	if !ok || len(prompts) != 1 {
		t.Fatalf("sshd, password alone after revert: success=%v prompts %q", ok, prompts)
	}
	// A second revert is a no-op.
	if err := c.Apply(ctx, pol(mamoriv1.Mode_MODE_MONITOR)); err != nil {
		t.Fatal(err)
	}
	if st := status(mamoriv1.ControlState_CONTROL_STATE_MONITORING); st.Evidence["pam_config"] != "not enabled (PAM left alone)" {
		t.Fatalf("second revert: %v", st.Evidence)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// pamLogin drives pamtester through the conversation: it answers the
// password prompt, then the code prompt if one comes (misc_conv reads
// one line per read(2), so answers are written only when asked).
func pamLogin(t *testing.T, service, user, password, code string) (bool, string) {
	t.Helper()
	cmd := exec.Command("pamtester", "-v", service, user, "authenticate")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	stdin, _ := cmd.StdinPipe()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(pr)
		answered := 0
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			s := out.String()
			mu.Unlock()
			if answered == 0 && strings.Contains(s, "Password:") {
				io.WriteString(stdin, password+"\n")
				answered++
			}
			if answered == 1 && strings.Contains(s, "Verification code") {
				io.WriteString(stdin, code+"\n")
				answered++
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	pw.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	s := out.String()
	return err == nil && strings.Contains(s, "successfully authenticated"), s
}
