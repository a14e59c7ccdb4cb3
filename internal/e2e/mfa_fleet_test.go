package e2e

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// waitLoginState waits until the server's fleet-wide login state
// satisfies ok.
func waitLoginState(t *testing.T, h *servertest.Harness, what string, ok func([]store.MFALoginState) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss, err := h.Srv.Store().MFALoginStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok(ss) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, ss)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMFAFleetReplayAndLockoutEndToEnd (issue #14 item 9): a real server
// and two real agent cores over mTLS, logins through their sockets. A
// code accepted on A is refused on B (reason=code_used) once A's report
// and B's next bundle have passed; failures on A count towards B's
// lock-out; a lock-out on A locks the user out on B; an unlock clears
// both; with the server gone B keeps its local rules.
func TestMFAFleetReplayAndLockoutEndToEnd(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	var en struct {
		URI string `json:"otpauth_uri"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", "tanaka", "-o", "json")), &en); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(en.URI)
	secret, err := totp.ParseBase32(u.Query().Get("secret"))
	if err != nil {
		t.Fatal(err)
	}
	code := func() string {
		c, _ := totp.Default().Code(secret, h.Clock.Now())
		return c
	}
	allowAllMFAUsers(t, h)
	a, b := startMFATerminal(t, h, "pc-fleet-a"), startMFATerminal(t, h, "pc-fleet-b")
	for _, m := range []*mfaTerminal{a, b} {
		m.waitRound(t, "the first bundle", func(daemon.RoundResult) bool { return len(m.ver.Users()) == 1 })
	}

	// Replay across terminals.
	c := code()
	if v := a.login(t, "tanaka", c); v != mfa.Allow {
		t.Fatalf("code on A: %v", v)
	}
	step := h.Clock.Now().Unix() / 30
	waitLoginState(t, h, "A's step on the server", func(ss []store.MFALoginState) bool {
		return len(ss) == 1 && ss[0].DeviceID == a.id && ss[0].LastStep == step
	})
	b.caughtUp(t, h, "B's bundle with A's step")
	if v := b.login(t, "tanaka", c); v != mfa.Deny {
		t.Fatalf("the code accepted on A, on B: %v", v)
	}

	// Failures add up: B's replay above was one, 3 more on A, and the
	// next on B is the fifth in the fleet: locked out.
	h.Clock.Advance(30 * time.Second)
	for range 3 {
		if v := a.login(t, "tanaka", "000000"); v != mfa.Deny {
			t.Fatalf("wrong code on A: %v", v)
		}
	}
	waitLoginState(t, h, "A's failures on the server", func(ss []store.MFALoginState) bool {
		for _, s := range ss {
			if s.DeviceID == a.id && s.Failures == 3 {
				return true
			}
		}
		return false
	})
	b.caughtUp(t, h, "B's bundle with A's failures")
	if v := b.login(t, "tanaka", "000000"); v != mfa.Locked {
		t.Fatalf("fifth wrong code in the fleet, on B: %v; want locked", v)
	}
	// B's lock-out reaches A: the right code is refused there.
	waitLoginState(t, h, "B's lock-out on the server", func(ss []store.MFALoginState) bool {
		for _, s := range ss {
			if s.DeviceID == b.id && !s.LockedUntil.IsZero() {
				return true
			}
		}
		return false
	})
	a.caughtUp(t, h, "A's bundle with B's lock-out")
	if v := a.login(t, "tanaka", code()); v != mfa.Locked {
		t.Fatalf("right code on A while locked out on B: %v; want locked", v)
	}

	// An unlock (all devices) clears both.
	mamorictl(t, h, "C", "mfa", "unlock", "tanaka")
	a.caughtUp(t, h, "the unlock on A")
	b.caughtUp(t, h, "the unlock on B")
	h.Clock.Advance(30 * time.Second)
	if v := a.login(t, "tanaka", code()); v != mfa.Allow {
		t.Fatalf("A after the unlock: %v", v)
	}

	// The server's events name the replay.
	evs, err := h.Srv.Store().ListEvents(ctx, store.EventFilter{DeviceID: b.id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Event.Kind == "mfa_failure" && e.Event.Attributes["reason"] == "code_used" {
			found = true
		}
	}
	if !found {
		t.Error("no mfa_failure reason=code_used from B on the server")
	}

	// Offline: B keeps its local rules (its own replay state).
	h.Stop()
	b.waitRound(t, "a failed round", func(r daemon.RoundResult) bool { return r.Err != nil })
	h.Clock.Advance(30 * time.Second)
	c = code()
	if v := b.login(t, "tanaka", c); v != mfa.Allow {
		t.Fatalf("B offline, fresh code: %v", v)
	}
	if v := b.login(t, "tanaka", c); v != mfa.Deny {
		t.Fatalf("B offline, replayed: %v", v)
	}
}
