package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
)

const singleNSEnv = "MAMORI_SINGLE_AGENT_IN_NAMESPACE"

// TestOneAgentPerSocket runs the real binary: a second `run` on the same
// state directory refuses while the first lives, an agent with another
// state directory refuses to take a live socket, and neither removes it;
// a stale socket (its agent gone) is replaced. It runs in a private mount
// namespace with its own /run, so the machine's agent is never touched.
func TestOneAgentPerSocket(t *testing.T) {
	if os.Getenv(singleNSEnv) != "" {
		oneAgentInNamespace(t)
		return
	}
	testenv.Short(t)
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare", "util-linux")
	bin := filepath.Join(t.TempDir(), "mamori-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "--",
		os.Args[0], "-test.run", "^TestOneAgentPerSocket$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), singleNSEnv+"=1", "MAMORI_TEST_AGENT="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the mount namespace:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestOneAgentPerSocket")) {
		t.Fatalf("namespace run failed: %v", err)
	}
}

type agentProc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

func oneAgentInNamespace(t *testing.T) {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	init, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init {
		t.Fatalf("not in a private mount namespace: refusing to touch /run")
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	const sock = "/run/mamori/agent.sock"
	bin := os.Getenv("MAMORI_TEST_AGENT")
	tmp := t.TempDir()
	start := func(stateDir string) *agentProc {
		t.Helper()
		var out bytes.Buffer
		cmd := exec.Command(bin, "run", "--config", "/dev/null", "--state-dir", stateDir)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		a := &agentProc{cmd: cmd, out: &out, done: make(chan error, 1)}
		go func() { a.done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill(); <-a.done })
		return a
	}
	waitSocket := func() os.FileInfo {
		t.Helper()
		for begin := time.Now(); time.Since(begin) < 20*time.Second; time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				fi, _ := os.Stat(sock)
				return fi
			}
		}
		t.Fatal("no agent answers on " + sock)
		return nil
	}
	refused := func(a *agentProc, want string) {
		t.Helper()
		select {
		case err := <-a.done:
			a.done <- err
			if err == nil || !strings.Contains(a.out.String(), want) {
				t.Fatalf("second agent: exit %v, output:\n%s", err, a.out)
			}
			t.Logf("refused: %s", strings.TrimSpace(a.out.String()))
		case <-time.After(20 * time.Second):
			t.Fatalf("second agent still running after 20 s:\n%s", a.out)
		}
	}
	s1 := filepath.Join(tmp, "state1")
	first := start(s1)
	fi := waitSocket()

	refused(start(s1), "another mamori-agent is running with this state directory (pid ")
	refused(start(filepath.Join(tmp, "state2")), "another mamori-agent is serving the local socket")
	// The first agent's socket is the same file and still answers.
	if now := waitSocket(); !os.SameFile(fi, now) {
		t.Fatal("the live socket was replaced")
	}

	// The first agent stops: its socket goes with it.
	first.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-first.done:
		first.done <- err
	case <-time.After(20 * time.Second):
		t.Fatal("first agent did not stop on SIGTERM")
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("socket left after the agent stopped")
	}
	// A stale socket (nobody listening: an agent killed with SIGKILL) is
	// replaced by the next agent, which also gets the state lock the
	// killed one held.
	killed := start(s1)
	waitSocket()
	killed.cmd.Process.Kill()
	<-killed.done
	killed.done <- nil
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("SIGKILL should leave the socket behind: %v", err)
	}
	start(s1)
	waitSocket()
}
