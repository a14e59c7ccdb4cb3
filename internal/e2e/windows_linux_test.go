package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/credprov"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/pam/pamtest"
	"github.com/mamori-dev/mamori/installer/packaging"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/internal/winetest"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestWindowsLogonEndToEnd: one enrolment with mamorictl, two terminals,
// each the real thing this machine can run.
//
//   - Linux: the agent core with its root-only socket, asked by the real
//     pam_mamori.so through a PAM service driven by pamtester.
//   - Windows: the real MSI, built here from the Windows agent and
//     mamori-cp.dll, installed under wine with msiexec; wine's service
//     manager runs the agent as the service mamori-agent, which enrols
//     with this server over loopback (SERVER, TOKEN, CA_FINGERPRINT from
//     the command line), gets the policy (login-mfa enforced) and the real
//     sealed bundle, and registers the credential provider itself. The
//     LogonUI stand-in loads mamori-cp.dll through COM and asks the
//     service's pipe.
//
// Codes come from oathtool with the secret enrolment printed. A recovery
// code used on Windows is refused on Linux after Linux's next bundle, and
// one used on Linux is refused on Windows after the service's next bundle.
func TestWindowsLogonEndToEnd(t *testing.T) {
	testenv.Short(t)
	testenv.RequireRoot(t) // a PAM service under /etc/pam.d
	oathtool := testenv.LookPath(t, "oathtool", "oathtool")
	pamtester := testenv.LookPath(t, "pamtester", "pamtester")
	testenv.LookPath(t, "wixl", "wixl")
	testenv.LookPath(t, "gcc", "gcc")
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		testenv.Unavailable(t, "PAM headers missing (Debian: libpam0g-dev)")
	}
	cc := testenv.LookPath(t, credprov.CC, "gcc-mingw-w64-x86-64")
	dir := t.TempDir()

	// The Windows agent compiles while the wine prefix initialises.
	agentExe := filepath.Join(dir, "mamori-agent.exe")
	built := make(chan error, 1)
	go func() {
		cmd := exec.Command("go", "build", "-o", agentExe, "../../agent/cmd/mamori-agent")
		cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			built <- fmt.Errorf("build the Windows agent: %v\n%s", err, b)
			return
		}
		built <- nil
	}()
	// The break-glass file's DACL under wine: see agent/loginmfa/wine_linux_test.go.
	defer syscall.Umask(syscall.Umask(0o077))
	env := winetest.New(t)
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	dll, standin := filepath.Join(dir, credprov.DLLName), filepath.Join(dir, "standin.exe")
	if err := credprov.Build(ctx, cc, credprov.DLLArgs("../../agent/credprov", dll)); err != nil {
		t.Fatal(err)
	}
	if err := credprov.Build(ctx, cc, credprov.StandInArgs("../../agent/credprov", standin)); err != nil {
		t.Fatal(err)
	}
	msi := filepath.Join(dir, "mamori-agent.msi")
	if err := packaging.BuildMSI(ctx, packaging.NewWXS(agentExe, dll, "v1.0.0"), dir, msi); err != nil {
		t.Fatal(err)
	}

	// The server; its log says which bundle went to which device.
	var srvLog syncBuffer
	h := servertest.Start(t, servertest.Options{Listen: freeAddr(t), Log: &srvLog})
	var en struct {
		URI   string   `json:"otpauth_uri"`
		Codes []string `json:"recovery_codes"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", "tanaka", "-o", "json")), &en); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(en.URI)
	secret := u.Query().Get("secret")
	if _, err := totp.ParseBase32(secret); err != nil || len(en.Codes) != 10 {
		t.Fatalf("enrolment: %v, %d codes", err, len(en.Codes))
	}
	oath := func(at time.Time) string {
		out, err := exec.Command(oathtool, "--totp", "-b", secret, "-N", "@"+strconv.FormatInt(at.Unix(), 10)).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	// login-mfa enforced (the Windows service registers the credential
	// provider), reports every 5 s (the minimum) so bundles travel fast.
	var pol map[string]any
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "policy", "get", "-o", "json")), &pol); err != nil {
		t.Fatal(err)
	}
	controls, _ := pol["controls"].(map[string]any)
	if controls == nil {
		controls = map[string]any{}
		pol["controls"] = controls
	}
	// users: who may log in where is explicit (issue #14: nobody by default).
	controls[loginmfaControl] = map[string]any{"mode": "MODE_ENFORCE", "settings": map[string]any{"users": "*"}}
	delete(pol, "reportInterval")
	pol["report_interval"] = "5s"
	pf := filepath.Join(dir, "policy.json")
	b, _ := json.Marshal(pol)
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mamorictl(t, h, "C", "policy", "set", pf, "--reason", "Windows logon e2e")

	// The Linux terminal: agent core + socket, pam_mamori.so + pamtester.
	linux := startMFATerminal(t, h, "pc-linux")
	pam := newPAMService(t, pamtester, linux.sock, filepath.Join(t.TempDir(), "breakglass"))
	linux.waitRound(t, "the first bundle", func(daemon.RoundResult) bool { return slices.Equal(linux.ver.Users(), []string{"tanaka"}) })
	if ok, out := pam.login(t, "tanaka", oath(h.Clock.Now())); !ok {
		t.Fatalf("Linux terminal, pamtester, oathtool code: refused\n%s", out)
	}

	// The Windows terminal: the MSI under wine. Wine ends a prefix's
	// services when no other wine process runs there: one long-lived
	// process keeps them up for the test.
	keep := env.Command(ctx, "cmd", "/c", "ping -n 99999 127.0.0.1 >nul")
	if err := keep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { keep.Process.Kill(); keep.Wait() }() //nolint:errcheck
	wine := func(timeout time.Duration, args ...string) (string, int) {
		t.Helper()
		return env.Run(t, timeout, nil, args[0], args[1:]...)
	}
	// The agent's log, for when something below fails.
	cfgFile := env.Path(`C:\ProgramData\mamori\agent.json`)
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(`{"log_file":"C:\\ProgramData\\mamori\\agent.log","log_level":"debug"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	agentLog := func() string {
		b, _ := os.ReadFile(env.Path(`C:\ProgramData\mamori\agent.log`))
		return string(b)
	}
	defer func() {
		if t.Failed() {
			t.Logf("the Windows service's log:\n%s", agentLog())
		}
		wine(time.Minute, "sc", "stop", "mamori-agent")
	}()
	if o, code := wine(3*time.Minute, "msiexec", "/i", msi, "/qn", "SERVER="+h.Addr, "TOKEN="+h.Token(t, 1, 0),
		"CA_FINGERPRINT="+h.Srv.Boot.CAFingerprint); code != 0 {
		t.Fatalf("msiexec /i exited %d:\n%s", code, o)
	}
	if o, _ := wine(time.Minute, "sc", "query", "mamori-agent"); !strings.Contains(o, "RUNNING") {
		t.Fatalf("the service is not running after msiexec:\n%s", o)
	}
	// The service enrols, takes policy and bundle, and registers the
	// provider (its preflight needs an enrolled user in the bundle and its
	// own pipe answering).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, code := wine(time.Minute, "reg", "query", `HKLM\`+loginmfa.FilterKey); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not register the credential provider within 2 minutes")
		}
		time.Sleep(time.Second)
	}
	// The tile's messages in English (the status text is checked below).
	if o, code := wine(time.Minute, "reg", "add", `HKLM\`+loginmfa.CPSettingsKey, "/v", "Language", "/d", "en", "/f"); code != 0 {
		t.Fatalf("reg add Language: %s", o)
	}
	winID := ""
	for _, d := range devicesJSON(t, h) {
		if d.ID != linux.id {
			winID = d.ID
		}
	}
	if winID == "" {
		t.Fatal("the Windows service's device is not on the server")
	}
	show := mamorictl(t, h, "C", "device", "show", winID)
	for _, want := range []string{"login-mfa", "mfa_bundle", "credential_provider"} {
		if !strings.Contains(show, want) {
			t.Errorf("device show %s lacks %q:\n%s", winID, want, show)
		}
	}

	logon := func(code string) map[string]string {
		t.Helper()
		o, _ := wine(2*time.Minute, standin, "logon", "tanaka", "pw-e2e", code)
		return parseStandIn(t, o)
	}
	r := logon(oath(time.Now()))
	if r["cpgsr"] != "2" || r["user"] != "tanaka" || r["password"] != "pw-e2e" {
		t.Fatalf("Windows, oathtool code through the service: %s (%q)", r["line"], r["status"])
	}
	if r = logon(en.Codes[0]); r["cpgsr"] != "2" {
		t.Fatalf("Windows, recovery code: %s (%q)", r["line"], r["status"])
	}
	if r = logon(en.Codes[0]); r["cpgsr"] != "0" {
		t.Fatalf("Windows, the same recovery code again: %s", r["line"])
	}

	// Windows → Linux: the service reports the use, the server drops the
	// code, Linux refuses it after its next bundle.
	waitList(t, h, "the server to consume the recovery code used on Windows", "tanaka", func(rec, _ int) bool { return rec == 9 })
	linux.caughtUp(t, h, "Linux's bundle without the code")
	if ok, out := pam.login(t, "tanaka", en.Codes[0]); ok {
		t.Fatalf("recovery code used on Windows, then on Linux (pamtester): accepted\n%s", out)
	}

	// Linux → Windows: a code used through pamtester is refused by the
	// service once it holds the bundle of the generation that dropped it.
	if ok, out := pam.login(t, "tanaka", en.Codes[1]); !ok {
		t.Fatalf("another recovery code on Linux (pamtester): refused\n%s", out)
	}
	waitList(t, h, "the server to consume the recovery code used on Linux", "tanaka", func(rec, _ int) bool { return rec == 8 })
	gen, err := h.Srv.Store().MFAGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bundleRE := regexp.MustCompile(`login-mfa\s+mfa_bundle\s+g(\d+)\.`)
	deadline = time.Now().Add(time.Minute)
	for {
		m := bundleRE.FindStringSubmatch(mamorictl(t, h, "C", "device", "show", winID))
		if m != nil {
			if g, _ := strconv.ParseInt(m[1], 10, 64); g >= gen {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Windows service did not report a bundle of generation %d within a minute (%v)", gen, m)
		}
		time.Sleep(time.Second)
	}
	if r = logon(en.Codes[1]); r["cpgsr"] != "0" || strings.Contains(r["status"], "cannot be reached") {
		t.Fatalf("recovery code used on Linux, then on Windows: %s (%q)", r["line"], r["status"])
	}
	if r = logon(en.Codes[2]); r["cpgsr"] != "2" {
		t.Fatalf("a fresh recovery code on Windows after that: %s (%q)", r["line"], r["status"])
	}
	if !strings.Contains(srvLog.String(), "mfa bundle sent") {
		t.Error("the server's log never said it sent a bundle")
	}
	t.Logf("Windows terminal %s (the MSI's service under wine) and Linux terminal %s (pamtester): codes from one secret on both, recovery codes once across both", winID, linux.id)
}

// loginmfaControl is the control's name in the policy.
const loginmfaControl = "login-mfa"

// pamService is a PAM service under /etc/pam.d naming a freshly built
// pam_mamori.so by absolute path, pointed at a terminal's socket.
type pamService struct {
	pamtester, service string
}

func newPAMService(t *testing.T, pamtester, sock, breakglass string) *pamService {
	t.Helper()
	so := filepath.Join(t.TempDir(), "pam_mamori.so")
	if err := pamtest.Build(so); err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	s := &pamService{pamtester: pamtester, service: "mamori-e2e-" + hex.EncodeToString(rnd[:])}
	conf := "# mamori e2e test service (removed by the test)\n" +
		"auth     required " + so + " socket=" + sock + " breakglass=" + breakglass + "\n" +
		"account  required pam_permit.so\n"
	path := filepath.Join("/etc/pam.d", s.service)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return s
}

// login runs pamtester: whether PAM said success, and its output.
func (s *pamService) login(t *testing.T, user, code string) (bool, string) {
	t.Helper()
	cmd := exec.Command(s.pamtester, "-v", s.service, user, "authenticate")
	cmd.Stdin = strings.NewReader(code + "\n")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	return err == nil && strings.Contains(string(out), "successfully authenticated"), string(out)
}

var standInKV = regexp.MustCompile(`(\w+)=(\S*)`)

// parseStandIn reads standin.exe's RESULT line; user, domain, password
// and status are hex of UTF-8.
func parseStandIn(t *testing.T, out string) map[string]string {
	t.Helper()
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "RESULT") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatalf("standin printed no RESULT:\n%s", out)
	}
	r := map[string]string{"line": line}
	for _, m := range standInKV.FindAllStringSubmatch(line, -1) {
		r[m[1]] = m[2]
		if m[1] == "user" || m[1] == "domain" || m[1] == "password" || m[1] == "status" {
			b, err := hex.DecodeString(m[2])
			if err != nil {
				t.Fatalf("%s=%q: %v", m[1], m[2], err)
			}
			r[m[1]] = string(b)
		}
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for the server's log goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
