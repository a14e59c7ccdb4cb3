package loginmfa_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshd is a real OpenSSH server on a loopback port, started inside the
// test's mount namespace: it reads the namespace's /etc/pam.d/sshd (or
// "other"), so it sees what pam-auth-update wrote there.
type sshd struct {
	addr    string
	hostKey ssh.PublicKey
}

func startSSHD(t *testing.T, dir string) *sshd {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "mamori test host key")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"Port " + port, "ListenAddress 127.0.0.1", "HostKey " + key, "PidFile " + filepath.Join(dir, "sshd.pid"),
		"UsePAM yes", "KbdInteractiveAuthentication yes", "PasswordAuthentication no", "PubkeyAuthentication no",
		"AuthenticationMethods keyboard-interactive", "PermitRootLogin no", "StrictModes no", "LogLevel VERBOSE", "",
	}, "\n")), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory (on the namespace's tmpfs)
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
	var log bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, &log}, lockedWriter{&mu, &log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		mu.Lock()
		t.Logf("sshd log:\n%s", log.String())
		mu.Unlock()
	})
	for start := time.Now(); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("sshd did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &sshd{addr: addr, hostKey: hostKey}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// login authenticates with keyboard-interactive, answering the password
// prompt and, when asked, the code prompt. It returns whether the server
// let the user in and the prompts it showed.
func (s *sshd) login(t *testing.T, user, password, code string) (bool, []string) {
	t.Helper()
	var prompts []string
	cfg := &ssh.ClientConfig{User: user, HostKeyCallback: ssh.FixedHostKey(s.hostKey), Timeout: 20 * time.Second,
		Auth: []ssh.AuthMethod{ssh.RetryableAuthMethod(ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i, q := range qs {
				prompts = append(prompts, q)
				switch {
				case strings.Contains(q, "Password"):
					ans[i] = password
				case strings.Contains(q, "Verification code"):
					ans[i] = code
				default:
					return nil, fmt.Errorf("unexpected prompt %q", q)
				}
			}
			return ans, nil
		}), 1)}}
	c, err := ssh.Dial("tcp", s.addr, cfg)
	if err != nil {
		if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("ssh: %v", err)
		}
		return false, prompts
	}
	c.Close()
	return true, prompts
}
