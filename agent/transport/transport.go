// Package transport dials the mamori server the way every agent call
// expects: TLS 1.3 only, message size matching the server, keepalive within
// the server's enforcement policy.
package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageBytes matches the server's limit (server/api.MaxMessageBytes).
const MaxMessageBytes = 4 << 20

// WindowBytes is the agent's fixed HTTP/2 receive window (see Dial).
const WindowBytes = 1 << 20

// DefaultCallTimeout bounds one RPC.
const DefaultCallTimeout = 30 * time.Second

// Keepalive pings a connection that has been silent for 3 minutes. The
// server refuses pings more often than every 20 s, so this must stay above
// that. It was 60 s: with the default report interval of a minute (±10 %)
// that woke an idle agent for a ping before every other report, though the
// report itself proves the connection (issue #20, docs/performance.md "The
// idle agent"). 3 minutes stays under the shortest idle timeout of common
// middleboxes that drop silent TCP connections (Azure's load balancer: 4
// minutes), so a terminal on a longer report interval keeps its connection.
var keepaliveParams = keepalive.ClientParameters{Time: 3 * time.Minute, Timeout: 20 * time.Second, PermitWithoutStream: true}

// Dial returns a client connection to addr ("host:port") with tlsCfg. It
// does not block; the first call connects.
func Dial(addr string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithKeepaliveParams(keepaliveParams),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithUserAgent("mamori-agent"),
		// A fixed receive window turns off gRPC's bandwidth-delay
		// estimator, which otherwise sends an HTTP/2 PING after the data
		// of every answer on an otherwise quiet connection: two more
		// frames and a TLS record each way per report, and a write on the
		// server for the ack (issue #20, docs/performance.md). What the
		// agent receives is small (answers, a policy, an MFA bundle well
		// under 1 MiB); 1 MiB is the window gRPC's estimator would grow to
		// on a fast link anyway.
		grpc.WithInitialWindowSize(WindowBytes),
		grpc.WithInitialConnWindowSize(WindowBytes),
		// gRPC's own reconnect back-off grows to 120 s by default, under the
		// agent's back-off: after a server restart with thousands of
		// terminals, most would sit idle long after the server is back.
		// The agent's jittered back-off spreads the load; this only bounds
		// the transport's share (measured by mamori-loadgen's reconnect
		// storm: 48–79 s uncapped, 26 s with a short cap).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 10 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// ServerName returns the host part of "host:port", the name the server
// certificate must carry.
func ServerName(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
