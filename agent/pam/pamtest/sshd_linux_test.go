package pamtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// TestSSHDLogin: a real login over Debian's OpenSSH server. sshd runs as
// root on 127.0.0.1 with its own config, host key and PAM service
// (pam_unix for the password of a throwaway local user, then the freshly
// built pam_mamori.so talking to a real agent verifier over the socket).
// A Go SSH client answers the keyboard-interactive prompts: password +
// TOTP code → a command runs; a wrong code → refused; the user with a
// TPM-bound PIN (simulator) → password + PIN. Everything it made — user,
// PAM service file, sshd, /run/sshd if it created it — is removed.
func TestSSHDLogin(t *testing.T) {
	testenv.Short(t)
	testenv.RequireRoot(t)
	sshdBin := testenv.LookPath(t, "/usr/sbin/sshd", "openssh-server")
	testenv.LookPath(t, "useradd", "passwd")
	testenv.LookPath(t, "chpasswd", "passwd")
	testenv.LookPath(t, "gcc", "gcc")
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		testenv.Unavailable(t, "PAM headers missing (Debian: libpam0g-dev)")
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755) // sshd reads the config as root; the user's home lies below
	so := filepath.Join(tmp, "pam_mamori.so")
	if err := Build(so); err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:])
	user, service := "mmrt"+tag, "mamori-sshd-test-"+tag
	password := randomPassword(t)

	// The agent: a real verifier behind a real socket, TOTP for the user;
	// PIN keys on the TPM simulator.
	tp := tpmtest.Open(t, 1)
	mt := mfa.NewTPM(tp)
	mdir := filepath.Join(tmp, "mfa")
	pins := &mfa.PINKeys{Dir: filepath.Join(mdir, "pin"), TPM: mt}
	cfg := mfa.DefaultConfig()
	events := &controltest.Emitter{}
	cfg.Dir, cfg.Events, cfg.PINs, cfg.Sealer = mdir, events, pins, mfa.TPMSealer{TPM: mt}
	v, err := mfa.Open(cfg, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	u := mfatest.NewUser(t, user)
	if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "run", "agent.sock")
	api := &localapi.Server{Path: sock, Verifier: v, AllowUID: 0}
	if err := api.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)

	// The throwaway user with a known password.
	home := filepath.Join(tmp, "home")
	run(t, "useradd", "-M", "-d", home, "-s", "/bin/sh", "-c", "mamori sshd test (removed by the test)", user)
	t.Cleanup(func() { deleteUser(t, user) })
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(user + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}

	// The PAM service sshd finds by its argv[0] (a symlink named like the
	// service, so /etc/pam.d/sshd is never touched).
	pamFile := filepath.Join("/etc/pam.d", service)
	conf := "# mamori sshd test service (removed by the test)\n" +
		"auth     required pam_unix.so\n" +
		"auth     required " + so + " socket=" + sock + " breakglass=" + filepath.Join(mdir, mfa.BreakGlassFile) + "\n" +
		"account  required pam_unix.so\n" +
		"session  required pam_permit.so\n" +
		"password required pam_deny.so\n"
	if err := os.WriteFile(pamFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })

	addr, hostKey := startSSHD(t, sshdBin, tmp, service, user)

	login := func(answer string) (string, error) {
		return sshRun(addr, hostKey, user, password, answer, "echo mamori-ok; id -un")
	}
	t.Run("password and TOTP", func(t *testing.T) {
		out, err := login(u.Code(time.Now()))
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		if out != "mamori-ok\n"+user+"\n" {
			t.Fatalf("command output %q", out)
		}
	})
	t.Run("wrong code refused", func(t *testing.T) {
		out, err := login("000000")
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("wrong code: %q, %v; want refused", out, err)
		}
	})
	t.Run("wrong password refused", func(t *testing.T) {
		_, err := sshRun(addr, hostKey, user, password+"x", u.Code(time.Now().Add(30*time.Second)), "true")
		if err == nil {
			t.Fatal("wrong password with a right code logged in")
		}
	})
	t.Run("password and TPM PIN", func(t *testing.T) {
		const pin = "739154"
		if err := pins.Enroll(user, []byte(pin)); err != nil {
			t.Fatal(err)
		}
		defer pins.Remove(user)
		if _, err := login("000000"); err == nil {
			t.Fatal("wrong PIN logged in")
		}
		out, err := login(pin)
		if err != nil || out != "mamori-ok\n"+user+"\n" {
			t.Fatalf("login with the PIN: %q, %v", out, err)
		}
	})
	var kinds []string
	for _, e := range events.Events() {
		kinds = append(kinds, e.Kind+"/"+e.Attrs["method"]+"/"+e.Attrs["service"])
	}
	want := []string{"mfa_success/totp/" + service, "mfa_failure/totp/" + service, "mfa_failure/pin/" + service, "mfa_success/pin/" + service}
	// The wrong-password attempt adds an event of its own: with
	// "required" PAM runs the whole stack, so pam_mamori is asked too.
	if !containsInOrder(kinds, want) {
		t.Fatalf("events %v; want %v in order", kinds, want)
	}
}

func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// sshRun logs in with keyboard-interactive, answering the password prompt
// (pam_unix) and the second-factor prompt (pam_mamori), and runs command.
func sshRun(addr string, hostKey ssh.PublicKey, user, password, answer, command string) (string, error) {
	rounds := 0
	cfg := &ssh.ClientConfig{
		User:            user,
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
		Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			rounds++
			if rounds > 4 {
				return nil, errors.New("too many prompt rounds")
			}
			answers := make([]string, len(questions))
			for i, q := range questions {
				switch {
				case strings.Contains(q, "Password"):
					answers[i] = password
				case strings.Contains(q, "Verification code"), strings.Contains(q, "PIN"):
					answers[i] = answer
				default:
					return nil, fmt.Errorf("unexpected prompt %q", q)
				}
			}
			return answers, nil
		})},
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(command)
	return string(out), err
}

// startSSHD runs sshd -D on a free loopback port with a config, host key
// and pid file in dir, under a symlink named service (its PAM service).
func startSSHD(t *testing.T, sshdBin, dir, service, user string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pemBlock, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyPath, pem.EncodeToMemory(pemBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey, _ := ssh.NewPublicKey(pub)
	// sshd needs its privilege separation directory.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	bin := filepath.Join(dir, service)
	if err := os.Symlink(sshdBin, bin); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		port := freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		config := filepath.Join(dir, "sshd_config")
		conf := strings.Join([]string{
			"Port " + strconv.Itoa(port),
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKeyPath,
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"UsePAM yes",
			"KbdInteractiveAuthentication yes",
			"PasswordAuthentication no",
			"PubkeyAuthentication no",
			"AuthenticationMethods keyboard-interactive",
			"PermitRootLogin no",
			"AllowUsers " + user,
			"StrictModes no",
			"PrintMotd no",
			"PrintLastLog no",
			"UseDNS no",
			"MaxAuthTries 3",
			"LogLevel VERBOSE",
			"",
		}, "\n")
		if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		cmd := exec.Command(bin, "-D", "-e", "-f", config)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		pgid := cmd.Process.Pid
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() {
			syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				syscall.Kill(-pgid, syscall.SIGKILL)
				<-done
			}
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			select {
			case <-done:
				t.Logf("sshd exited at start (port %d taken?):\n%s", port, logs.String())
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("sshd log:\n%s", logs.String())
					}
				})
				return addr, hostKey
			}
		}
		stop()
	}
	t.Fatal("sshd did not come up")
	return "", nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomPassword(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "Mm-" + hex.EncodeToString(b)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// deleteUser removes the throwaway user; sshd's session processes may
// take a moment to end.
func deleteUser(t *testing.T, user string) {
	var out []byte
	var err error
	for range 50 {
		if out, err = exec.Command("userdel", user).CombinedOutput(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("userdel %s: %v\n%s (remove the user by hand)", user, err, out)
}
