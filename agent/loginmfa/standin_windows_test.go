package loginmfa_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestWindowsCredProvControl runs the control's scenario (credprov_test.go)
// against the real Windows registry (wine's, from wine_linux_test.go).
func TestWindowsCredProvControl(t *testing.T) {
	if os.Getenv("MAMORI_LOGINMFA_HKLM") != "1" {
		t.Skip("writes HKLM: run through TestUnderWine")
	}
	credProvScenario(t, loginmfa.WindowsRegistry{}, tempDir(t))
}

// underWine reports whether this Windows is wine.
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// tempDir is t.TempDir without its clean-up failing the test under wine,
// whose file system refuses Go's RemoveAll ("Invalid function"); the
// prefix is thrown away anyway.
func tempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "mamori-loginmfa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// pipeBench runs `standin pipebench` against the pipes and returns its
// lines (PIPEBENCH, PIPEBENCH2, ECHOBENCH) by their first word.
func pipeBench(t *testing.T, exe, n string, pipes ...string) map[string]standInResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, append([]string{"pipebench", n, "bench", "000000"}, pipes...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("standin pipebench: %v\n%s", err, out)
	}
	lines := map[string]standInResult{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		line = strings.TrimSpace(line)
		word, _, _ := strings.Cut(line, " ")
		r := standInResult{"line": line}
		for _, m := range kvRE.FindAllStringSubmatch(line, -1) {
			r[m[1]] = m[2]
		}
		lines[word] = r
	}
	want := []string{"PIPEBENCH", "ECHOBENCH"}
	if len(pipes) > 1 {
		want = append(want, "PIPEBENCH2")
	}
	for _, w := range want {
		if lines[w]["p99_us"] == "" {
			t.Fatalf("standin pipebench: no %s line:\n%s", w, out)
		}
	}
	return lines
}

// farFromStepEdge waits, when the current TOTP step ends within 10 s, for
// the next one: a code read for "two steps away" must still be two steps
// away when the verifier checks it, a second or more later on a loaded
// machine (a +2 code read just before a step's end was once accepted as
// +1, rightly).
func farFromStepEdge(t *testing.T) {
	t.Helper()
	if left := 30 - time.Now().Unix()%30; left < 10 {
		time.Sleep(time.Duration(left)*time.Second + 500*time.Millisecond)
	}
}

// standInResult is one RESULT/FILTER/BENCH line of standin.exe, its
// hex-encoded strings decoded.
type standInResult map[string]string

var kvRE = regexp.MustCompile(`(\w+)=(\S*)`)

// lineKV reads the key=value pairs of one line of the stand-in's output
// as they are (no hex decoding), the whole line under "line".
func lineKV(l string) standInResult {
	r := standInResult{"line": strings.TrimSpace(l)}
	for _, m := range kvRE.FindAllStringSubmatch(l, -1) {
		r[m[1]] = m[2]
	}
	return r
}

func runStandIn(t *testing.T, exe string, args ...string) standInResult {
	t.Helper()
	timeout := time.Minute
	if args[0] == "bench" || args[0] == "pipebench" || args[0] == "bgbench" || args[0] == "kdfbench" {
		timeout = 15 * time.Minute // make bench runs thousands, on a shared machine
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, args...).CombinedOutput()
	if err != nil && !bytes.HasPrefix(out, []byte("ERROR")) {
		t.Fatalf("standin %v: %v\n%s", args[:1], err, out)
	}
	line := strings.TrimSpace(string(out))
	r := standInResult{"line": line}
	for _, m := range kvRE.FindAllStringSubmatch(line, -1) {
		r[m[1]] = m[2]
		if m[1] == "user" || m[1] == "domain" || m[1] == "password" || m[1] == "status" {
			b, err := hex.DecodeString(m[2])
			if err != nil {
				t.Fatalf("%s=%q: %v", m[1], m[2], err)
			}
			r[m[1]] = string(b)
		}
	}
	if strings.HasPrefix(line, "ERROR") {
		r["error"] = line
	}
	return r
}

// noopVerifier denies at once: the pipe's own cost in the bench.
type noopVerifier struct{}

func (noopVerifier) Verify(context.Context, mfa.Attempt) mfa.Verdict { return mfa.Deny }
func (noopVerifier) Method(context.Context, string) mfa.Method       { return mfa.MethodTOTP }

// TestWindowsStandIn drives mamori-cp.dll through standin.exe, a LogonUI
// stand-in that loads it through COM after the login-mfa control
// registered it, against the agent's real pipe and verifier (a bundle
// sealed to this "terminal" the way the server seals it). TOTP codes were
// made by oathtool on the Linux side from the same secret.
func TestWindowsStandIn(t *testing.T) {
	standin, dllSrc := os.Getenv("MAMORI_CP_STANDIN"), os.Getenv("MAMORI_CP_DLL")
	if standin == "" || dllSrc == "" {
		t.Skip("needs standin.exe and mamori-cp.dll: run through TestUnderWine")
	}
	ctx := context.Background()
	secret, err := totp.ParseBase32(os.Getenv("MAMORI_CP_SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	// oathtool's codes by time step (wine_linux_test.go); code(d) is the
	// code d steps from the current one, read at the moment it is used.
	steps := map[int64]string{}
	for _, kv := range strings.Split(os.Getenv("MAMORI_CP_CODES"), ",") {
		k, v, _ := strings.Cut(kv, ":")
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			t.Fatalf("MAMORI_CP_CODES: %q", kv)
		}
		steps[n] = v
	}
	code := func(d int64) string {
		c, ok := steps[time.Now().Unix()/30+d]
		if !ok {
			t.Fatalf("no oathtool code for step %+d from now", d)
		}
		return c
	}

	// The agent's side: verifier with a sealed bundle, the pipe.
	dir := tempDir(t)
	em := &controltest.Emitter{}
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events = filepath.Join(dir, "mfa"), em
	cfg.MaxFailures = 1 << 20 // the bench below sends wrong codes; lock-out is agent/mfa's test
	v, err := mfa.Open(cfg, "dev-wine")
	if err != nil {
		t.Fatal(err)
	}
	// tanaka's recovery codes as the server issues them (argon2id with a
	// salt per code, issue 14 item 8: the DLL checks them itself with the
	// agent down, argon2id.c); sato's as servers issued them before
	// (SHA-256 under the user's salt), which still work until used.
	tanaka, bench := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "bench")
	sato := mfatest.NewLegacyUser(t, "sato")
	tanaka.Secret, tanaka.Record.TotpSecret = secret, secret
	if err := v.TakeBundle(ctx, "dev-wine", mfatest.Seal(t, v.PublicKey(), "dev-wine", "g1.p1", tanaka, sato, bench)); err != nil {
		t.Fatal(err)
	}
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	self := u.User.Sid.String() // under wine every process runs as this user, none as SYSTEM
	pipe := fmt.Sprintf(`\\.\pipe\mamori-test-%d`, os.Getpid())
	srv := &localapi.Server{Path: pipe, Verifier: v, AllowSIDs: []string{self},
		PipeSDDL: "D:P(A;;GA;;;SY)(A;;GA;;;" + self + ")"}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	// The pipe serves only the accounts it is told to: a server left at
	// its default (SYSTEM only) refuses this process.
	strict := &localapi.Server{Path: pipe + "-strict", Verifier: v}
	if err := strict.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := localapi.Check(ctx, strict.Path); err == nil {
		t.Fatal("a SYSTEM-only pipe answered a client that is not SYSTEM")
	}
	// A second server on the same name is refused (no squatting, no
	// sharing): go-winio creates the first instance with FILE_CREATE.
	// Wine does not enforce that for pipes; real Windows does
	// (docs/windows.md, manual checks).
	second := &localapi.Server{Path: strict.Path, Verifier: v, AllowSIDs: []string{self}}
	if err := second.Start(ctx); err == nil {
		second.Stop()
		if !underWine() {
			t.Fatal("a second listener on the agent's pipe name was created")
		}
		t.Log("wine let a second listener create an existing pipe name (Windows refuses FILE_CREATE on an existing pipe)")
	}
	strict.Stop()

	// The DLL where the MSI puts it; the control registers it.
	dll := filepath.Join(dir, "mamori-cp.dll")
	b, err := os.ReadFile(dllSrc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dll, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	cp := &loginmfa.CredProvOptions{Registry: loginmfa.WindowsRegistry{}, DLL: dll,
		MSISHA256: func() (string, error) { return hex.EncodeToString(sum[:]), nil },
		PipeCheck: func(ctx context.Context) error { return localapi.Check(ctx, pipe) },
		Pipe:      pipe, BreakGlass: filepath.Join(cfg.Dir, mfa.BreakGlassFile), ServiceSID: self}
	c := loginmfa.New(loginmfa.Options{Emitter: &controltest.Emitter{}, CredProv: cp, Users: v.Users})
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("control: %v %v", st.State, st.Evidence)
	}
	// Japanese messages: the tests read the English ones.
	if err := cp.Registry.Set(loginmfa.CPSettingsKey, "Language", "en"); err != nil {
		t.Fatal(err)
	}
	computer, err := windows.ComputerName()
	if err != nil {
		t.Fatal(err)
	}
	const password = "Pässw0rd 日本 x" // UTF-16 surrogates-free but not ASCII

	refused := func(t *testing.T, r standInResult, why string) {
		t.Helper()
		if r["cpgsr"] != "0" || r["status"] == "" || r["icon"] != "1" || r["user"] != "" {
			t.Fatalf("want refused (%s), got %s", why, r["line"])
		}
		if !strings.Contains(r["status"], why) {
			t.Fatalf("status %q, want %q", r["status"], why)
		}
		t.Logf("refused: %q", r["status"])
	}
	allowed := func(t *testing.T, r standInResult, user, domain, msgtype string) {
		t.Helper()
		if r["cpgsr"] != "2" || r["clsid"] != "ok" {
			t.Fatalf("want CPGSR_RETURN_CREDENTIAL_FINISHED, got %s (status %q)", r["line"], r["status"])
		}
		// The serialization unpacks to exactly what was typed.
		if r["user"] != user || r["password"] != password || !strings.EqualFold(r["domain"], domain) || r["msgtype"] != msgtype {
			t.Fatalf("serialization: user %q domain %q password %q msgtype %s; want %q %q %q %s",
				r["user"], r["domain"], r["password"], r["msgtype"], user, domain, password, msgtype)
		}
		t.Logf("credential: %s load %s µs, check %s µs", r["size"], r["load_us"], r["check_us"])
	}

	// Two steps ahead first: once a step is accepted, later ones are what
	// is left to refuse.
	t.Run("code two steps ahead", func(t *testing.T) {
		farFromStepEdge(t)
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, code(+2)), "not correct")
	})
	codeNow := code(0)
	t.Run("right code", func(t *testing.T) {
		allowed(t, runStandIn(t, standin, "logon", "tanaka", password, codeNow), "tanaka", computer, "2")
	})
	t.Run("replayed code", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, codeNow), "not correct")
	})
	t.Run("code two steps behind", func(t *testing.T) {
		farFromStepEdge(t)
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, code(-2)), "not correct")
	})
	t.Run("non-digits", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, "abcdef"), "not correct")
	})
	t.Run("4000-character code", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, "@repeat:4000:7"), "not in a valid form")
	})
	t.Run("4000-character user name", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "@repeat:4000:a", password, "123456"), "not in a valid form")
	})
	t.Run("4000-character password", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", "@repeat:4000:p", "123456"), "not in a valid form")
	})
	t.Run("control character in code", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, "12\t456"), "not in a valid form")
	})
	t.Run("Japanese messages", func(t *testing.T) {
		if err := cp.Registry.Set(loginmfa.CPSettingsKey, "Language", "ja"); err != nil {
			t.Fatal(err)
		}
		defer cp.Registry.Set(loginmfa.CPSettingsKey, "Language", "en")
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, "@repeat:4000:7"), "確認コードの形式が正しくありません")
	})
	t.Run("empty code", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, ""), "Enter your user name")
	})
	t.Run("user not enrolled", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "suzuki", password, codeNow), "not correct")
	})
	t.Run("unlock with a recovery code, domain given", func(t *testing.T) {
		allowed(t, runStandIn(t, standin, "unlock", `CORP\tanaka`, password, tanaka.RecoveryCodes[0]), "tanaka", "CORP", "7")
	})
	t.Run("filter hides the password tile in enforce", func(t *testing.T) {
		r := runStandIn(t, standin, "filter", "logon")
		if r["inbox"] != "0" || r["mamori"] != "1" || r["thirdparty"] != "0" {
			t.Fatal(r["line"])
		}
		r = runStandIn(t, standin, "filter", "unlock")
		if r["inbox"] != "0" || r["mamori"] != "1" {
			t.Fatal(r["line"])
		}
		r = runStandIn(t, standin, "filter", "credui") // RDP/UAC: left alone
		if r["inbox"] != "1" || r["mamori"] != "1" || r["thirdparty"] != "1" {
			t.Fatal(r["line"])
		}
	})
	t.Run("a pipe not served by the agent's account is not trusted", func(t *testing.T) {
		if err := cp.Registry.Set(loginmfa.CPSettingsKey, "ServiceSID", "S-1-5-18"); err != nil {
			t.Fatal(err)
		}
		r := runStandIn(t, standin, "logon", "bench", password, "123456")
		if err := cp.Registry.Set(loginmfa.CPSettingsKey, "ServiceSID", self); err != nil {
			t.Fatal(err)
		}
		refused(t, r, "cannot be reached")
	})
	t.Run("clients that leave at once do not stop the pipe", func(t *testing.T) {
		// As the DLL does when it does not trust the pipe's server, and any
		// client that gives up: connect, close before a word. The pipe must
		// go on answering (it once kept failing on the abandoned instance,
		// and every later client found it busy).
		p, err := windows.UTF16PtrFromString(pipe)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING, 0, 0)
			if err == nil {
				windows.CloseHandle(h)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := localapi.Check(cctx, pipe); err != nil {
			t.Fatalf("the pipe after 30 clients that left at once: %v", err)
		}
	})
	t.Run("DLL load time", func(t *testing.T) {
		r := runStandIn(t, standin, "dllload", dll)
		us, err := strconv.Atoi(r["us"])
		if err != nil {
			t.Fatal(r["line"])
		}
		t.Logf("BENCH what mamori-cp.dll adds to LogonUI's start (load, class factory, tile, fields): %d µs", us)
		if us > 50000 {
			t.Errorf("the DLL adds %d µs to LogonUI's start; the budget is 50 ms", us)
		}
	})
	n := os.Getenv("MAMORI_CP_BENCH_N")
	if n == "" {
		n = "300"
	}
	t.Run("bench", func(t *testing.T) {
		r := runStandIn(t, standin, "bench", n, "bench", password, "000000")
		t.Logf("BENCH a whole GetSerialization (LSA lookup, method?, verify through the pipe): %s", r["line"])
		if r["p99_us"] == "" {
			t.Fatal(r["line"])
		}
		// The code check alone, against two baselines measured in the same
		// run, request by request in turn (the load of a shared machine
		// falls on all three alike): the agent's pipe with a verifier that
		// answers at once (no TOTP check, no durable write) and a pipe the
		// stand-in serves itself with a fixed answer (no Go, no peer
		// check: wine's pipe transport alone).
		noop := &localapi.Server{Path: pipe + "-noop", Verifier: noopVerifier{}, AllowSIDs: []string{self}, PipeSDDL: srv.PipeSDDL}
		if err := noop.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer noop.Stop()
		// And the real verifier with its state on tmpfs (/dev/shm through
		// wine's Z: drive), where an fsync costs nothing: the share of the
		// durable write each attempt makes (agent/mfa journals every
		// failure and syncs it before answering).
		pipes := []string{pipe, noop.Path}
		if fi, err := os.Stat(`Z:\dev\shm`); err == nil && fi.IsDir() {
			mcfg := cfg
			mcfg.Dir = fmt.Sprintf(`Z:\dev\shm\mamori-bench-%d`, os.Getpid())
			defer os.RemoveAll(mcfg.Dir)
			vm, err := mfa.Open(mcfg, "dev-wine")
			if err != nil {
				t.Fatal(err)
			}
			if err := vm.TakeBundle(ctx, "dev-wine", mfatest.Seal(t, vm.PublicKey(), "dev-wine", "g1.p1", bench)); err != nil {
				t.Fatal(err)
			}
			mem := &localapi.Server{Path: pipe + "-tmpfs", Verifier: vm, AllowSIDs: []string{self}, PipeSDDL: srv.PipeSDDL}
			if err := mem.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer mem.Stop()
			pipes = append(pipes, mem.Path)
		}
		// And the real verifier with its events in a real spool on disk,
		// as mamori-agent wires it (daemon.NewReservedEmitter): the spool
		// fsyncs each failure event before Verify returns. The lines
		// above use an in-memory emitter.
		scfg := cfg
		scfg.Dir = filepath.Join(dir, "mfa-spool")
		sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		scfg.Events = daemon.NewReservedEmitter(sp, nil)
		vs, err := mfa.Open(scfg, "dev-wine")
		if err != nil {
			t.Fatal(err)
		}
		if err := vs.TakeBundle(ctx, "dev-wine", mfatest.Seal(t, vs.PublicKey(), "dev-wine", "g1.p1", bench)); err != nil {
			t.Fatal(err)
		}
		spooled := &localapi.Server{Path: pipe + "-spool", Verifier: vs, AllowSIDs: []string{self}, PipeSDDL: srv.PipeSDDL}
		if err := spooled.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer spooled.Stop()
		pipes = append(pipes, spooled.Path)
		spoolLabel := "PIPEBENCH" + strconv.Itoa(len(pipes))
		lines := pipeBench(t, standin, n, pipes...)
		real, noopLine, echo := lines["PIPEBENCH"], lines["PIPEBENCH2"], lines["ECHOBENCH"]
		t.Logf("BENCH the code check through the pipe (one verify a connection): %s", real["line"])
		t.Logf("BENCH baseline: the agent's pipe with a verifier that answers at once: %s", noopLine["line"])
		if l, ok := lines["PIPEBENCH3"]; ok {
			t.Logf("BENCH the code check with the verifier's state on tmpfs (no disk in the fsync): %s", l["line"])
		}
		spoolLine := lines[spoolLabel]
		t.Logf("BENCH the code check with the failure event in a real spool on disk (the agent's wiring): %s", spoolLine["line"])
		t.Logf("BENCH baseline: wine's pipe transport alone (the stand-in's own echo pipe): %s", echo["line"])
		ratio := func(a, b standInResult, k string) string {
			x, _ := strconv.ParseFloat(a[k], 64)
			y, _ := strconv.ParseFloat(b[k], 64)
			if y == 0 {
				return "?"
			}
			return strconv.FormatFloat(x/y, 'f', 1, 64)
		}
		t.Logf("BENCH ratio to the echo pipe: code check p50 %s× p99 %s×; no-op verifier p50 %s× p99 %s×; with the spool p50 %s× p99 %s×",
			ratio(real, echo, "p50_us"), ratio(real, echo, "p99_us"), ratio(noopLine, echo, "p50_us"), ratio(noopLine, echo, "p99_us"),
			ratio(spoolLine, echo, "p50_us"), ratio(spoolLine, echo, "p99_us"))
	})
	var events []controltest.Event
	t.Run("agent events", func(t *testing.T) {
		events = em.Events()
		kinds := map[string]int{}
		for _, e := range events {
			kinds[e.Kind]++
			if strings.Contains(fmt.Sprint(e.Attrs), codeNow) {
				t.Fatalf("a code in an event: %v", e)
			}
		}
		if kinds[mfa.KindSuccess] != 1 || kinds[mfa.KindRecoveryUsed] != 1 || kinds[mfa.KindFailure] < 5 {
			t.Fatalf("events %v", kinds)
		}
	})

	// Agent down: codes refused, a recovery code works once, from the
	// break-glass file, and is reported when the agent is back.
	srv.Stop()
	t.Run("agent down: TOTP refused", func(t *testing.T) {
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, code(+1)), "cannot be reached")
	})
	t.Run("agent down: recovery code once", func(t *testing.T) {
		// argon2id (as issued now), then a legacy SHA-256 code: each
		// accepted once by the DLL's own check, refused the second time.
		allowed(t, runStandIn(t, standin, "logon", "tanaka", password, tanaka.RecoveryCodes[1]), "tanaka", computer, "2")
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, tanaka.RecoveryCodes[1]), "cannot be reached")
		allowed(t, runStandIn(t, standin, "logon", "sato", password, sato.RecoveryCodes[0]), "sato", computer, "2")
		refused(t, runStandIn(t, standin, "logon", "sato", password, sato.RecoveryCodes[0]), "cannot be reached")
		// Another user's code is not tanaka's.
		refused(t, runStandIn(t, standin, "logon", "tanaka", password, sato.RecoveryCodes[1]), "cannot be reached")
		used, err := os.ReadFile(cp.BreakGlass + ".used")
		if err != nil || !bytes.Contains(used, []byte(tanaka.Record.RecoveryCodeHashes[1]+" tanaka windows-logon - ")) ||
			!bytes.Contains(used, []byte(sato.Record.RecoveryCodeHashes[0]+" sato windows-logon - ")) {
			t.Fatalf("breakglass.used: %q %v", used, err)
		}
		// The lines are gone from the file the DLL reads; the others stay.
		bg, err := os.ReadFile(cp.BreakGlass)
		if err != nil || bytes.Contains(bg, []byte(tanaka.Record.RecoveryCodeHashes[1])) ||
			bytes.Contains(bg, []byte(sato.Record.RecoveryCodeHashes[0])) || !bytes.Contains(bg, []byte(tanaka.Record.RecoveryCodeHashes[2])) {
			t.Fatalf("breakglass after the uses: %q %v", bg, err)
		}
		// Back: the agent reports both uses, each by the code ID the
		// server gives the hash it holds (mfabundle.CodeID), so the
		// server marks exactly those codes used.
		v.ReportBreakGlass(ctx)
		reported := map[string]string{}
		for _, e := range em.Events() {
			if e.Kind == mfa.KindRecoveryUsed && e.Attrs["via"] == "break-glass" {
				reported[e.Attrs["code_id"]] = e.Attrs["user"]
			}
		}
		if want := map[string]string{mfabundle.CodeID(tanaka.Record.RecoveryCodeHashes[1]): "tanaka",
			mfabundle.CodeID(sato.Record.RecoveryCodeHashes[0]): "sato"}; !maps.Equal(reported, want) {
			t.Fatalf("break-glass uses reported %v, want %v", reported, want)
		}
	})
	// The DLL's offline check, argon2id (1 MiB, 1 pass) beside the legacy
	// SHA-256, in the same run: whole GetSerializations that consume a
	// code each, and cp_bg_take alone on one line in memory.
	t.Run("agent down: offline check time", func(t *testing.T) {
		bn := 200
		if s := os.Getenv("MAMORI_CP_BG_N"); s != "" {
			if bn, err = strconv.Atoi(s); err != nil || bn < 1 || bn > 1000 {
				t.Fatalf("MAMORI_CP_BG_N=%q", s)
			}
		}
		kdfUser, shaUser := mfatest.NewUserN(t, "bgkdf", bn, true), mfatest.NewUserN(t, "bgsha", bn, false)
		// The file as the agent writes it from a bundle (BreakGlass.Replace).
		if err := (&mfa.BreakGlass{Path: cp.BreakGlass}).Replace([]*mamoriv1.MFAUserSecret{kdfUser.Record, shaUser.Record}); err != nil {
			t.Fatal(err)
		}
		r := runStandIn(t, standin, "bgbench", password, "bgkdf", strings.Join(kdfUser.RecoveryCodes, ","),
			"bgsha", strings.Join(shaUser.RecoveryCodes, ","))
		lines := map[string]standInResult{}
		for _, l := range strings.Split(r["line"], "\n") {
			if f := lineKV(l); f["who"] != "" {
				lines[f["who"]] = f
			}
		}
		for _, u := range []string{"bgkdf", "bgsha"} {
			l := lines[u]
			if l["allowed"] != strconv.Itoa(bn) {
				t.Fatalf("%s: %d codes, allowed %q:\n%s", u, bn, l["allowed"], r["line"])
			}
		}
		t.Logf("BENCH agent down, a whole GetSerialization with the break-glass check (lock, read, hash, .used, rewrite): argon2id: %s", lines["bgkdf"]["line"])
		t.Logf("BENCH agent down, the same with legacy SHA-256 codes: %s", lines["bgsha"]["line"])
		code := kdfUser.RecoveryCodes[0]
		kdfLine := "u 00 " + kdfUser.Record.RecoveryCodeHashes[0] + "\n"
		shaLine := "u " + hex.EncodeToString(kdfUser.Record.RecoverySalt) + " " + mfabundle.HashRecoveryCode(kdfUser.Record.RecoverySalt, code) + "\n"
		r = runStandIn(t, standin, "kdfbench", strconv.Itoa(bn), "u", code, kdfLine, shaLine)
		seen := 0
		for _, l := range strings.Split(r["line"], "\n") {
			if f := lineKV(l); f["hash"] == "1" || f["hash"] == "2" {
				if f["found"] != strconv.Itoa(bn) {
					t.Fatalf("kdfbench: %s", l)
				}
				seen++
				t.Logf("BENCH the check alone (cp_bg_take on one line in memory), %s: %s", map[string]string{"1": "argon2id", "2": "SHA-256"}[f["hash"]], l)
			}
		}
		if seen != 2 {
			t.Fatalf("kdfbench: %s", r["line"])
		}
	})

	// Monitor: the control removes provider and filter; LogonUI would
	// load neither, so nothing is hidden.
	t.Run("monitor", func(t *testing.T) {
		if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil {
			t.Fatal(err)
		}
		r := runStandIn(t, standin, "filter", "logon")
		if r["error"] == "" {
			t.Fatalf("the filter is still registered in monitor mode: %s", r["line"])
		}
	})
}
