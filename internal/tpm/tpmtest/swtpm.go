package tpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// Swtpm starts a fresh swtpm (Debian package swtpm) with its own state
// directory on loopback TCP and returns a transport to it. The process is
// stopped when the test ends. swtpm serves one connection at a time.
func Swtpm(t testing.TB) transport.TPMCloser {
	t.Helper()
	bin := testenv.LookPath(t, "swtpm", "swtpm")
	var lastErr error
	for range 5 {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		// Not t.TempDir(): its name comes from the test's, and a comma
		// in it would split swtpm's "dir=…" option.
		state, err := os.MkdirTemp("", "swtpm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(state) })
		cmd := exec.Command(bin, "socket", "--tpm2",
			"--tpmstate", "dir="+state,
			"--server", "type=tcp,port="+strconv.Itoa(port)+",bindaddr=127.0.0.1",
			"--ctrl", "type=tcp,port="+strconv.Itoa(port+1)+",bindaddr=127.0.0.1",
			"--flags", "not-need-init,startup-clear")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start swtpm: %v", err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				tp := transport.FromReadWriteCloser(c)
				t.Cleanup(func() { tp.Close() })
				return tp
			}
			lastErr = err
		}
		cmd.Process.Kill()
	}
	t.Fatalf("swtpm did not come up: %v", lastErr)
	return nil
}

// freePortPair finds a port p such that p and p+1 were free just now.
func freePortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port pair on 127.0.0.1")
}
