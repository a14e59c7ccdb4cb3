package pamtest

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// fullWidth writes ASCII digits and letters as a Japanese input method
// does with full-width input on.
func fullWidth(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f {
			r += 0xFEE0
		} else if r == ' ' {
			r = 0x3000
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestPAMFullWidthCode: "８８７６８７" is the code 887687, through the
// agent (NFKC) and, with the agent down, a full-width recovery code through
// the module's own break-glass path.
func TestPAMFullWidthCode(t *testing.T) {
	s := newStack(t)
	tanaka := mfatest.NewUser(t, "tanaka")
	if err := s.verifier.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, s.verifier.PublicKey(), "dev-1", "g1.p1", tanaka)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	code := tanaka.Code(now)
	t.Logf("typed %q for %s", fullWidth(code), code)
	s.want("full-width TOTP code", "tanaka", fullWidth(code), true)
	s.want("full-width code with an ideographic space", "tanaka", fullWidth(tanaka.Code(now.Add(30 * time.Second))[:3]+" "+tanaka.Code(now.Add(30 * time.Second))[3:]), true)
	s.want("full-width wrong code", "tanaka", fullWidth("000000"), false)
	s.stopAgent()
	defer s.startAgent()
	s.want("full-width recovery code, agent down", "tanaka", fullWidth(strings.ToLower(tanaka.RecoveryCodes[0])), true)
}

// TestPAMOverallDeadline: an agent that trickles its answers one byte at a
// time (400 ms apart) cannot stretch a login past the module's timeout:
// per-call socket timeouts let such an agent make one login take 13–14 s
// with timeout=1500 (issue 21). Now both questions together stay within
// the timeout.
func TestPAMOverallDeadline(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "gcc", "gcc")
	pt := testenv.LookPath(t, "pamtester", "pamtester")
	tmp := t.TempDir()
	so := filepath.Join(tmp, "pam_mamori.so")
	if err := Build(so); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n [4]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(n[:])))
				for _, b := range []byte{0, 0, 0, 2, 2, 0} { // "allow", a byte at a time
					time.Sleep(400 * time.Millisecond)
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
		}
	}()
	service := writeService(t, "auth required "+so+" socket="+sock+" breakglass="+filepath.Join(tmp, "none")+" timeout=1500\naccount required pam_permit.so\n")
	start := time.Now()
	cmd := exec.Command(pt, "-v", service, "tanaka", "authenticate")
	cmd.Stdin = strings.NewReader("123456\n")
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("login against a trickling agent, timeout=1500: %v, %v\n%s", took.Round(time.Millisecond), err, out)
	if err == nil {
		t.Fatal("a trickled answer that came after the deadline was accepted")
	}
	if took > 2300*time.Millisecond {
		t.Fatalf("login took %v; the module's deadline is 1.5 s for the whole login", took)
	}
}

func writeService(t *testing.T, conf string) string {
	t.Helper()
	name := "mamori-test-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	p := filepath.Join("/etc/pam.d", name)
	if err := os.WriteFile(p, []byte("# mamori test service (removed by the test)\n"+conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return name
}

// TestPAMOwnUserScreenUnlock runs PAM as an ordinary user, as a screen
// locker does: pamtester with uid 4301 may verify the code of the account
// with uid 4301 (tanaka) and no one else's, and only a few times a minute.
func TestPAMOwnUserScreenUnlock(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "gcc", "gcc")
	pt := testenv.LookPath(t, "pamtester", "pamtester")
	// World-traversable: the module and the socket must be reachable for uid 4301.
	tmp, err := os.MkdirTemp("", "mamori-ownuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	os.Chmod(tmp, 0o755)
	so := filepath.Join(tmp, "pam_mamori.so")
	if err := Build(so); err != nil {
		t.Fatal(err)
	}
	os.Chmod(so, 0o644)
	sock := filepath.Join(tmp, "run", "agent.sock")
	events := &controltest.Emitter{}
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events = filepath.Join(tmp, "mfa"), events
	v, err := mfa.Open(cfg, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	tanaka, suzuki := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "suzuki")
	if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1.p1", tanaka, suzuki)); err != nil {
		t.Fatal(err)
	}
	uids := map[string]uint32{"tanaka": 4301, "suzuki": 4302}
	api := &localapi.Server{Path: sock, Verifier: v, AllowUID: 0, OwnUser: func(n string) (uint32, bool) { u, ok := uids[n]; return u, ok }}
	if err := api.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)
	for p, want := range map[string]os.FileMode{filepath.Dir(sock): 0o755 | os.ModeDir, sock: 0o666 | os.ModeSocket} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	service := writeService(t, "auth required "+so+" socket="+sock+" breakglass="+filepath.Join(tmp, "mfa", mfa.BreakGlassFile)+"\naccount required pam_permit.so\n")
	login := func(uid uint32, user, code string) (bool, string) {
		t.Helper()
		cmd := exec.Command(pt, "-v", service, user, "authenticate")
		cmd.Stdin = strings.NewReader(code + "\n")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), "successfully authenticated"), string(out)
	}
	now := time.Now()
	if ok, out := login(4301, "tanaka", tanaka.Code(now)); !ok {
		t.Fatalf("tanaka unlocking tanaka's own session: refused\n%s", out)
	}
	if ok, _ := login(4301, "suzuki", suzuki.Code(now)); ok {
		t.Fatal("uid 4301 verified suzuki's code")
	}
	if ok, _ := login(4301, "sato", "123456"); ok {
		t.Fatal("uid 4301 verified an unknown user")
	}
	evs := events.Events()
	if len(evs) != 1 || evs[0].Kind != mfa.KindSuccess || evs[0].Attrs["user"] != "tanaka" {
		t.Fatalf("the verifier saw more than tanaka's own login: %+v", evs)
	}
	// Rate: OwnUserBurst attempts (one spent above), then "locked" for
	// uid 4301, while root still verifies for anyone.
	for i := 1; i < localapi.OwnUserBurst; i++ {
		login(4301, "tanaka", "000000")
	}
	ok, out := login(4301, "tanaka", tanaka.Code(now.Add(30*time.Second)))
	if ok || !strings.Contains(out, "Locked") {
		t.Fatalf("attempt %d within the minute: success=%v\n%s", localapi.OwnUserBurst+1, ok, out)
	}
	if ok, out := login(0, "suzuki", suzuki.Code(now.Add(30*time.Second))); !ok {
		t.Fatalf("root for suzuki after uid 4301 hit its limit: refused\n%s", out)
	}
}
