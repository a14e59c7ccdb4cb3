package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestSilentEnrolmentForgetsToken: the agent enrols itself from the
// installer's environment file against the real server (real TLS,
// SQLite), then removes the token from that file; the other settings stay,
// and the next start (enrolled, token still in its environment) needs
// nothing from it and changes nothing more.
func TestSilentEnrolmentForgetsToken(t *testing.T) {
	h := servertest.Start(t, servertest.Options{DataDir: t.TempDir(), Listen: freeAddr(t)})
	tok := h.Token(t, 1, 0)
	env := filepath.Join(t.TempDir(), "mamori-agent")
	orig := "# written by the postinst\nMAMORI_SERVER='" + h.Addr + "'\nMAMORI_TOKEN='" + tok + "'\nMAMORI_CA_FINGERPRINT='" + h.Srv.Boot.CAFingerprint + "'\n"
	if err := os.WriteFile(env, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	hook := func(c *daemon.Config, _ daemon.Spool) {
		c.Servers, c.Token, c.CAFingerprint = []string{h.Addr}, config.Secret(tok), h.Srv.Boot.CAFingerprint
		c.ForgetToken = func() error { calls++; return config.ForgetToken(env) }
	}
	a := startAgentWith(t, dir, h.Clock.Now, "pc-forget", hook)
	a.waitRound(t, "an enrolled round", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	if _, err := dir.LoadIdentity(); err != nil {
		t.Fatalf("not enrolled: %v", err)
	}
	b, _ := os.ReadFile(env)
	if strings.Contains(string(b), tok) || !strings.Contains(string(b), "\nMAMORI_TOKEN=\n") {
		t.Fatalf("token still in the environment file:\n%s", b)
	}
	if !strings.Contains(string(b), "MAMORI_SERVER='"+h.Addr+"'\n") || !strings.Contains(string(b), "MAMORI_CA_FINGERPRINT=") {
		t.Fatalf("other settings lost:\n%s", b)
	}
	if fi, _ := os.Stat(env); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if calls != 1 {
		t.Fatalf("ForgetToken called %d times", calls)
	}
	// Restart: enrolled already, the token (still in the process's
	// environment until systemd restarts it) is forgotten again without
	// any change to the file.
	before, _ := os.Stat(env)
	time.Sleep(10 * time.Millisecond)
	a = startAgentWith(t, dir, h.Clock.Now, "pc-forget", hook)
	a.waitRound(t, "a round after restart", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	after, _ := os.Stat(env)
	if !after.ModTime().Equal(before.ModTime()) || calls != 2 {
		t.Fatalf("restart rewrote the file or skipped the check (calls %d)", calls)
	}
}
