package loginmfa_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestWindowsEndToEnd is the Windows terminal of internal/e2e's
// TestWindowsLogonEndToEnd: the agent core enrols with the real server
// running on the Linux side, receives the real bundle, serves its pipe;
// the stand-in logs in through mamori-cp.dll with a code from the same
// secret the Linux terminal uses, then with a recovery code, whose use the
// agent reports so the server takes it from every other terminal.
func TestWindowsEndToEnd(t *testing.T) {
	server := os.Getenv("MAMORI_E2E_SERVER")
	standin, dllSrc := os.Getenv("MAMORI_CP_STANDIN"), os.Getenv("MAMORI_CP_DLL")
	if server == "" || standin == "" || dllSrc == "" {
		t.Skip("run through internal/e2e TestWindowsLogonEndToEnd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	user, recovery := os.Getenv("MAMORI_E2E_USER"), os.Getenv("MAMORI_E2E_RECOVERY")
	steps := map[int64]string{}
	for _, kv := range strings.Split(os.Getenv("MAMORI_CP_CODES"), ",") {
		k, v, _ := strings.Cut(kv, ":")
		n, _ := strconv.ParseInt(k, 10, 64)
		steps[n] = v
	}

	dir := tempDir(t)
	sd, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	facts := &mamoriv1.DeviceFacts{Hostname: "pc-windows", Os: "windows", OsVersion: "wine", AgentVersion: "test",
		MachineId: "e2e-machine-pc-windows", KeyStorage: "file"}
	if _, err := enroll.Enroll(ctx, slog.New(slog.DiscardHandler), sd, enroll.Params{Servers: []string{server},
		Token: config.Secret(os.Getenv("MAMORI_E2E_TOKEN")), CAFingerprint: os.Getenv("MAMORI_E2E_CA"), Facts: facts}); err != nil {
		t.Fatalf("enrol with the real server: %v", err)
	}
	id, err := sd.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "state", "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mcfg := mfa.DefaultConfig()
	mcfg.Dir, mcfg.Events = filepath.Join(dir, "state", "mfa"), daemon.NewEmitter(sp, nil)
	v, err := mfa.Open(mcfg, id.Device.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	rounds := make(chan daemon.RoundResult, 64)
	dcfg := daemon.DefaultConfig()
	dcfg.State, dcfg.Spool, dcfg.MFA = sd, sp, v
	dcfg.Facts = func(context.Context) (*mamoriv1.DeviceFacts, error) { return facts, nil }
	dcfg.BackoffBase, dcfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	dcfg.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d, 200*time.Millisecond)):
			return nil
		}
	}
	dcfg.OnRound = func(r daemon.RoundResult) {
		select {
		case rounds <- r:
		default:
		}
	}
	d, err := daemon.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	defer func() { stop(); <-done }()
	waitRound := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case <-rounds:
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitRound("the bundle from the server", func() bool { return slices.Contains(v.Users(), user) })

	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	self := u.User.Sid.String()
	pipe := fmt.Sprintf(`\\.\pipe\mamori-e2e-%d`, os.Getpid())
	srv := &localapi.Server{Path: pipe, Verifier: v, AllowSIDs: []string{self}, PipeSDDL: "D:P(A;;GA;;;SY)(A;;GA;;;" + self + ")"}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	b, err := os.ReadFile(dllSrc)
	if err != nil {
		t.Fatal(err)
	}
	dll := filepath.Join(dir, "mamori-cp.dll")
	if err := os.WriteFile(dll, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	cp := &loginmfa.CredProvOptions{Registry: loginmfa.WindowsRegistry{}, DLL: dll,
		MSISHA256: func() (string, error) { return hex.EncodeToString(sum[:]), nil },
		PipeCheck: func(ctx context.Context) error { return localapi.Check(ctx, pipe) },
		Pipe:      pipe, BreakGlass: filepath.Join(mcfg.Dir, mfa.BreakGlassFile), ServiceSID: self}
	c := loginmfa.New(loginmfa.Options{Emitter: &controltest.Emitter{}, CredProv: cp, Users: v.Users})
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}); err != nil {
		t.Fatal(err)
	}
	defer c.Apply(ctx, nil)
	if err := cp.Registry.Set(loginmfa.CPSettingsKey, "Language", "en"); err != nil {
		t.Fatal(err)
	}

	r := runStandIn(t, standin, "logon", user, "pw", steps[time.Now().Unix()/30])
	if r["cpgsr"] != "2" || r["user"] != user {
		t.Fatalf("TOTP code from the enrolled secret: %s (%q)", r["line"], r["status"])
	}
	r = runStandIn(t, standin, "logon", user, "pw", recovery)
	if r["cpgsr"] != "2" {
		t.Fatalf("recovery code: %s (%q)", r["line"], r["status"])
	}
	r = runStandIn(t, standin, "logon", user, "pw", recovery)
	if r["cpgsr"] != "0" {
		t.Fatalf("recovery code twice: %s", r["line"])
	}
	// The use travels to the server with the next report.
	waitRound("the recovery code's event acknowledged", func() bool { return sp.Len() == 0 })
	t.Logf("Windows terminal %s: TOTP and recovery code accepted through mamori-cp.dll, the use reported", id.Device.DeviceID)
}
