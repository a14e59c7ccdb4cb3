package e2e

import (
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// verifyOverSocket asks the agent's local socket, as pam_mamori.so does.
func verifyOverSocket(t *testing.T, sock, user, code string) mfa.Verdict {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := localapi.AppendRequest(nil, localapi.Request{User: user, Service: "login", Code: code})
	c.Write(req)
	ans, err := io.ReadAll(c)
	if err != nil || len(ans) != 6 {
		t.Fatalf("answer %q, %v", ans, err)
	}
	return mfa.Verdict(ans[5])
}

// TestMFAOffline: an officer enrols a user on the server; a real agent
// core receives the sealed bundle with its next report; with the server
// stopped the user still logs in through the agent's socket (and a replay
// is refused); a user enrolled while the terminal was offline can log in
// after the next report; the login events reach the server.
func TestMFAOffline(t *testing.T) {
	testenv.Short(t)
	data, addr := t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	secretOf := func(h *servertest.Harness, user string) totp.Secret {
		en, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: user})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(en.OtpauthUri)
		s, err := totp.ParseBase32(u.Query().Get("secret"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tanaka := secretOf(h, "tanaka")
	allowAllMFAUsers(t, h)

	dir := enrolAgent(t, h, t.TempDir(), "pc-mfa")
	sock := filepath.Join(t.TempDir(), "run", "agent.sock")
	var ver *mfa.Verifier
	a := startAgentWith(t, dir, h.Clock.Now, "pc-mfa", func(cfg *daemon.Config, sp daemon.Spool) {
		mcfg := mfa.DefaultConfig()
		mcfg.Dir, mcfg.Events = filepath.Join(dir.Path(), "mfa"), daemon.NewEmitter(sp, nil)
		v, err := mfa.Open(mcfg, deviceID(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		ver, cfg.MFA = v, v
		api := &localapi.Server{Path: sock, Verifier: v, AllowUID: uint32(os.Geteuid())}
		if err := api.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(api.Stop)
	})
	a.waitRound(t, "a bundle", func(daemon.RoundResult) bool { return slices.Equal(ver.Users(), []string{"tanaka"}) })

	h.Stop()
	a.waitRound(t, "a failed round while the server is down", func(r daemon.RoundResult) bool { return r.Err != nil })
	code, _ := totp.Default().Code(tanaka, time.Now())
	if v := verifyOverSocket(t, sock, "tanaka", code); v != mfa.Allow {
		t.Fatalf("server down, right code: %v", v)
	}
	if v := verifyOverSocket(t, sock, "tanaka", code); v != mfa.Deny {
		t.Fatalf("server down, replayed code: %v", v)
	}

	// Enrolled while the terminal cannot reach the server.
	h2 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	officer = h2.Admin(t, h2.Operator(t, "officer2", auth.RoleOfficer))
	suzuki := secretOf(h2, "suzuki")
	a.waitRound(t, "the new bundle", func(daemon.RoundResult) bool {
		return slices.Equal(ver.Users(), []string{"suzuki", "tanaka"})
	})
	code, _ = totp.Default().Code(suzuki, time.Now())
	if v := verifyOverSocket(t, sock, "suzuki", code); v != mfa.Allow {
		t.Fatalf("user enrolled while offline, after the next report: %v", v)
	}
	id := deviceID(t, dir)
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, err := h2.Srv.Store().ListEvents(ctx, store.EventFilter{DeviceID: id, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range evs {
			if e.Event.Control == "login-mfa" {
				kinds = append(kinds, e.Event.Kind)
			}
		}
		if len(kinds) == 3 {
			slices.Sort(kinds)
			if !slices.Equal(kinds, []string{"mfa_failure", "mfa_success", "mfa_success"}) {
				t.Fatalf("login events on the server: %v", kinds)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("login events on the server after 20 s: %v", kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
