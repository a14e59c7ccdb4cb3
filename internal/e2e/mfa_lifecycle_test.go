package e2e

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/server/servertest"
)

// mfaTerminal is an agent core with its verifier and local socket.
type mfaTerminal struct {
	*agent
	id   string
	ver  *mfa.Verifier
	sock string
}

func startMFATerminal(t *testing.T, h *servertest.Harness, host string) *mfaTerminal {
	t.Helper()
	dir := enrolAgent(t, h, t.TempDir(), host)
	m := &mfaTerminal{id: deviceID(t, dir), sock: filepath.Join(t.TempDir(), "run", "agent.sock")}
	m.agent = startAgentWith(t, dir, h.Clock.Now, host, func(cfg *daemon.Config, sp daemon.Spool) {
		mcfg := mfa.DefaultConfig()
		mcfg.Dir, mcfg.Events, mcfg.Now = filepath.Join(dir.Path(), "mfa"), daemon.NewEmitter(sp, nil), h.Clock.Now
		v, err := mfa.Open(mcfg, m.id)
		if err != nil {
			t.Fatal(err)
		}
		m.ver, cfg.MFA = v, v
		api := &localapi.Server{Path: m.sock, Verifier: v, AllowUID: uint32(os.Geteuid())}
		if err := api.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(api.Stop)
	})
	return m
}

// login asks the terminal's socket, as pam_mamori.so does.
func (m *mfaTerminal) login(t *testing.T, user, code string) mfa.Verdict {
	t.Helper()
	return verifyOverSocket(t, m.sock, user, code)
}

// caughtUp waits until the terminal holds a bundle of the server's current
// MFA generation or a later one (bundle versions are "g<generation>.p<policy>").
func (m *mfaTerminal) caughtUp(t *testing.T, h *servertest.Harness, what string) {
	t.Helper()
	want, err := h.Srv.Store().MFAGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.waitRound(t, what, func(daemon.RoundResult) bool {
		g, _, _ := strings.Cut(strings.TrimPrefix(m.ver.BundleVersion(), "g"), ".")
		n, err := strconv.ParseInt(g, 10, 64)
		return err == nil && n >= want
	})
}

type mfaListJSON struct {
	Users []struct {
		User              string `json:"user"`
		RecoveryCodesLeft int    `json:"recovery_codes_left"`
		TempCodesActive   int    `json:"temp_codes_active"`
	} `json:"users"`
}

// waitList waits until `mamorictl mfa list` says ok about user.
func waitList(t *testing.T, h *servertest.Harness, what, user string, ok func(recovery, temp int) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var l mfaListJSON
		if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "list", "-o", "json")), &l); err != nil {
			t.Fatal(err)
		}
		for _, u := range l.Users {
			if u.User == user && ok(u.RecoveryCodesLeft, u.TempCodesActive) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMFALifecycleEndToEnd: a real server and two real agent cores over
// mTLS, every operator step through mamorictl's own code path, every login
// through the agents' sockets. A temporary code works once and is then
// refused on both terminals; another one expires on the terminal's clock;
// a recovery code used on terminal A is refused on B after B's next report;
// an unlock clears a lock-out; a reset makes the code stop working.
func TestMFALifecycleEndToEnd(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	var en struct {
		URI   string   `json:"otpauth_uri"`
		Codes []string `json:"recovery_codes"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", "tanaka", "-o", "json")), &en); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(en.URI)
	secret, err := totp.ParseBase32(u.Query().Get("secret"))
	if err != nil || len(en.Codes) != 10 {
		t.Fatalf("enrolment: %v, %d codes", err, len(en.Codes))
	}
	code := func() string {
		c, _ := totp.Default().Code(secret, h.Clock.Now())
		return c
	}
	allowAllMFAUsers(t, h)
	a, b := startMFATerminal(t, h, "pc-life-a"), startMFATerminal(t, h, "pc-life-b")
	for _, m := range []*mfaTerminal{a, b} {
		m.waitRound(t, "the first bundle", func(daemon.RoundResult) bool { return slices.Equal(m.ver.Users(), []string{"tanaka"}) })
	}

	// A temporary code: once on A, then refused on A and, after B's next
	// report, on B.
	var tc struct {
		Code string `json:"code"`
		ID   string `json:"id"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "temp-code", "tanaka", "--expires", "1h", "-o", "json")), &tc); err != nil {
		t.Fatal(err)
	}
	a.caughtUp(t, h, "the temp code on A")
	b.caughtUp(t, h, "the temp code on B")
	if v := a.login(t, "tanaka", tc.Code); v != mfa.Allow {
		t.Fatalf("temp code on A: %v", v)
	}
	if v := a.login(t, "tanaka", tc.Code); v != mfa.Deny {
		t.Fatalf("temp code again on A: %v", v)
	}
	waitList(t, h, "the server to consume the temp code", "tanaka", func(_, temp int) bool { return temp == 0 })
	b.caughtUp(t, h, "B's bundle without the temp code")
	if v := b.login(t, "tanaka", tc.Code); v != mfa.Deny {
		t.Fatalf("temp code used on A, then on B: %v", v)
	}

	// Two more temporary codes: after 10 minutes on the terminals' clock
	// the 10-minute one is refused, the 1-hour one still works.
	var short, long struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "temp-code", "tanaka", "--expires", "10m", "-o", "json")), &short); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "temp-code", "tanaka", "--expires", "1h", "-o", "json")), &long); err != nil {
		t.Fatal(err)
	}
	a.caughtUp(t, h, "two more temp codes on A")
	h.Clock.Advance(10*time.Minute + time.Second)
	if v := a.login(t, "tanaka", short.Code); v != mfa.Deny {
		t.Fatalf("expired temp code: %v", v)
	}
	if v := a.login(t, "tanaka", long.Code); v != mfa.Allow {
		t.Fatalf("unexpired temp code: %v", v)
	}

	// A recovery code used on A is refused on B after B's next report.
	if v := a.login(t, "tanaka", en.Codes[6]); v != mfa.Allow {
		t.Fatalf("recovery code on A: %v", v)
	}
	waitList(t, h, "the server to consume the recovery code", "tanaka", func(rec, _ int) bool { return rec == 9 })
	b.caughtUp(t, h, "B's bundle without the recovery code")
	if v := b.login(t, "tanaka", en.Codes[6]); v != mfa.Deny {
		t.Fatalf("recovery code used on A, then on B: %v", v)
	}
	if v := b.login(t, "tanaka", en.Codes[7]); v != mfa.Allow {
		t.Fatalf("an unused recovery code on B: %v", v)
	}

	// Lock-out on A; mamorictl mfa unlock --device A clears it.
	for range 5 {
		a.login(t, "tanaka", "000000")
	}
	if v := a.login(t, "tanaka", code()); v != mfa.Locked {
		t.Fatalf("right code after 5 failures: %v; want locked", v)
	}
	mamorictl(t, h, "C", "mfa", "unlock", "tanaka", "--device", a.id)
	a.caughtUp(t, h, "the unlock on A")
	if v := a.login(t, "tanaka", code()); v != mfa.Allow {
		t.Fatalf("right code after the unlock: %v", v)
	}

	// Reset: the code stops working everywhere.
	if out := mamorictl(t, h, "C", "mfa", "reset", "tanaka", "--reason", "lost phone"); !strings.Contains(out, "tanaka") {
		t.Fatalf("reset output: %s", out)
	}
	a.caughtUp(t, h, "the reset on A")
	b.caughtUp(t, h, "the reset on B")
	h.Clock.Advance(30 * time.Second) // a fresh step
	for _, m := range []*mfaTerminal{a, b} {
		if v := m.login(t, "tanaka", code()); v != mfa.Deny {
			t.Fatalf("TOTP after the reset: %v", v)
		}
		if v := m.login(t, "tanaka", en.Codes[8]); v != mfa.Deny {
			t.Fatalf("recovery code after the reset: %v", v)
		}
	}
}
