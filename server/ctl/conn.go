package ctl

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/internal/buildinfo"
	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Environment variables, read when the matching flag is not given.
const (
	EnvServer        = "MAMORI_SERVER"
	EnvCAFile        = "MAMORI_CA_FILE"
	EnvCAFingerprint = "MAMORI_CA_FINGERPRINT"
	EnvToken         = "MAMORI_TOKEN"
)

// maxRecvMsgSize bounds one answer; a page of 500 devices with every
// control and its evidence fits comfortably.
const maxRecvMsgSize = 32 << 20

func buildVersion() string { return buildinfo.Version }

// secret is the operator API token. It never prints: String, the flag
// default and slog all see "[redacted]".
type secret string

func (s *secret) Set(v string) error { *s = secret(v); return nil }

// String redacts; flag uses it for defaults.
func (s *secret) String() string { return "[redacted]" }

// LogValue redacts the token in logs.
func (s secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func (s secret) reveal() string { return string(s) }

// bearer sends the operator token as "authorization: Bearer …" on every
// call, and only over a secure transport.
type bearer struct{ token secret }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token.reveal()}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = bearer{}

// conn is an open connection to the server.
type conn struct {
	admin  mamoriv1.AdminServiceClient
	server string
	close  func()
	// ca is the pinned CA certificate once known (from --ca-file, or
	// from the handshake that matched --ca-fingerprint).
	ca func() *x509.Certificate
}

// resolveEnv fills connection settings that no flag gave from the
// environment: flags win over environment.
func (c *cli) resolveEnv() {
	env := c.o.Getenv
	if c.g.server == "" {
		c.g.server = strings.TrimSpace(env(EnvServer))
	}
	if c.g.caFile == "" && c.g.caFingerprint == "" {
		c.g.caFile = strings.TrimSpace(env(EnvCAFile))
		c.g.caFingerprint = strings.TrimSpace(env(EnvCAFingerprint))
		if c.g.caFile != "" && c.g.caFingerprint != "" {
			// Both in the environment: the CA file is the stronger anchor.
			c.g.caFingerprint = ""
		}
	}
	if c.g.token == "" {
		c.g.token = secret(strings.TrimSpace(env(EnvToken)))
	}
}

// connect checks the connection settings and dials. Nothing is sent yet;
// the first call connects. Every mistake here is a usage error (exit 2).
func (c *cli) connect(cmd string) (*conn, error) {
	c.resolveEnv()
	if c.g.server == "" {
		return nil, c.usage(cmd, "ctl.err.no-server")
	}
	host, port, err := net.SplitHostPort(c.g.server)
	if err != nil || host == "" || port == "" {
		return nil, c.usage(cmd, "ctl.err.bad-server", c.g.server)
	}
	if c.g.token == "" {
		return nil, c.usage(cmd, "ctl.err.no-token")
	}
	if strings.ContainsAny(c.g.token.reveal(), " \t\r\n") {
		return nil, c.usage(cmd, "ctl.err.bad-token")
	}
	var creds credentials.TransportCredentials
	var caMu sync.Mutex
	var caCert *x509.Certificate
	switch {
	case c.g.caFile != "" && c.g.caFingerprint != "":
		return nil, c.usage(cmd, "ctl.err.ca-both")
	case c.g.caFile != "":
		ca, err := pki.ReadCert(c.g.caFile)
		if err != nil {
			return nil, c.usage(cmd, "ctl.err.ca-file", c.g.caFile, err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		caCert = ca
		creds = credentials.NewTLS(pki.ClientTLSConfig(pool, nil, host))
	case c.g.caFingerprint != "":
		cfg, err := pki.PinnedTLSConfig(c.g.caFingerprint, host, func(ca *x509.Certificate) {
			caMu.Lock()
			caCert = ca
			caMu.Unlock()
		})
		if err != nil {
			return nil, c.usage(cmd, "ctl.err.ca-fingerprint", c.g.caFingerprint)
		}
		creds = credentials.NewTLS(cfg)
	default:
		return nil, c.usage(cmd, "ctl.err.no-ca")
	}
	cc, err := grpc.NewClient(c.g.server,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: c.g.token}),
		grpc.WithUserAgent("mamorictl/"+buildVersion()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	)
	if err != nil {
		return nil, c.usage(cmd, "ctl.err.bad-server", c.g.server)
	}
	return &conn{admin: mamoriv1.NewAdminServiceClient(cc), server: c.g.server, close: func() { cc.Close() },
		ca: func() *x509.Certificate { caMu.Lock(); defer caMu.Unlock(); return caCert }}, nil
}

// call runs one RPC with the --timeout and maps its error.
func call[Req, Resp any](ctx context.Context, c *cli, cn *conn, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	resp, err := f(ctx, req)
	if err != nil {
		var zero Resp
		if errors.Is(ctx.Err(), context.Canceled) {
			return zero, localizedError{c.p.Sprintf("ctl.err.canceled")}
		}
		return zero, c.statusError(cn.server, err)
	}
	return resp, nil
}

// query runs a command that takes no arguments but -o: it connects, makes
// the one call do makes (with call), and prints the answer as JSON or
// hands it to text.
func query[Resp proto.Message](ctx context.Context, c *cli, cmd string, args []string,
	do func(context.Context, *conn) (Resp, error), text func(Resp) error) error {
	fs := c.newFlagSet(cmd)
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, do, text)
}

// send is the end of a command that makes one call: it connects, makes the
// call do makes (with call), and prints the answer as JSON (format "json")
// or hands it to text.
func send[Resp proto.Message](ctx context.Context, c *cli, cmd string, format outputFormat,
	do func(context.Context, *conn) (Resp, error), text func(Resp) error) error {
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := do(ctx, cn)
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	return text(resp)
}
