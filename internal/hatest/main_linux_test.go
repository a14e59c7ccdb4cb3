package hatest

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/loadgen"
	"github.com/mamori-dev/mamori/server/serve"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// Environment of the re-executed server child.
const (
	envServer = "MAMORI_HATEST_SERVER" // set: this process is a server
	envData   = "MAMORI_HATEST_DATA"
	envDB     = "MAMORI_HATEST_DB"
	envListen = "MAMORI_HATEST_LISTEN"
	envAdmin  = "MAMORI_HATEST_ADMIN_LISTEN"
)

func TestMain(m *testing.M) {
	if os.Getenv(envServer) != "" {
		os.Exit(serverChild())
	}
	os.Exit(pgtest.Main(m))
}

// serverChild runs mamori-server through the same serve.Open and Serve as
// cmd/mamori-server, until SIGTERM (graceful) or SIGKILL.
func serverChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := serve.DefaultConfig()
	cfg.DataDir, cfg.DB, cfg.Listen, cfg.AdminListen = os.Getenv(envData), os.Getenv(envDB), os.Getenv(envListen), os.Getenv(envAdmin)
	cfg.Hosts = []string{"localhost", "127.0.0.1"}
	cfg.AdminTokenFile = filepath.Join(cfg.DataDir, "admin.token")
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := serve.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// server is a mamori-server child process.
type server struct {
	t              testing.TB
	data, db, addr string
	adminAddr      string // the admin API's port
	log            string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// startServer starts a server process on addr with its data in data and,
// when db is set, its store in PostgreSQL.
func startServer(t testing.TB, data, db, addr string) *server {
	t.Helper()
	s := &server{t: t, data: data, db: db, addr: addr, adminAddr: freeAddr(t), log: filepath.Join(data, "server.log")}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServer+"=1", envData+"="+s.data, envDB+"="+s.db, envListen+"="+s.addr, envAdmin+"="+s.adminAddr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("server exited during start-up:\n%s", s.output())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server not listening on %s after 60 s:\n%s", s.addr, s.output())
		}
	}
}

// kill sends SIGKILL and waits: no graceful stop, nothing flushed.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// stop sends SIGTERM: the graceful stop of a service manager.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Errorf("server did not stop within 30 s of SIGTERM; killing it")
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *server) pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *server) output() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// adminToken is an admin token for many calls: the first admin's
// bootstrap token (admin.token, single use) exchanged once for a named
// one, kept in the data directory.
func (s *server) adminToken(t testing.TB) string {
	t.Helper()
	kept := filepath.Join(s.data, "admin.token.named")
	if b, err := os.ReadFile(kept); err == nil {
		return strings.TrimSpace(string(b))
	}
	b, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := caPool(t, s.data)
	tok, _, err := loadgen.ExchangeBootstrap(context.Background(),
		loadgen.Config{AdminServer: s.adminAddr, CA: pool, AdminToken: strings.TrimSpace(string(b))}, "hatest")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return tok
}

// caPool reads the server's CA certificate.
func caPool(t testing.TB, data string) (*x509.CertPool, string) {
	t.Helper()
	cert, err := pki.ReadCert(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, pki.Fingerprint(cert.Raw)
}

// shareCA copies the CA certificate and key, as every server of one
// deployment must have them.
func shareCA(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adminClient is an AdminService client of the server at addr.
func adminClient(t *testing.T, addr string, pool *x509.CertPool, token string) mamoriv1.AdminServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLSConfig(pool, nil, "127.0.0.1"))),
		grpc.WithPerRPCCredentials(servertest.Bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return mamoriv1.NewAdminServiceClient(cc)
}
