// Package localapi is the agent's root-only local socket (Linux) and
// SYSTEM-only named pipe (Windows). pam_mamori.so (agent/pam) and the
// credential provider mamori-cp.dll (agent/credprov) ask it to verify a
// login's second factor; both speak the same wire format.
//
// Wire format (all integers big-endian), one request and one answer per
// connection:
//
//	request:  u32 length N (1..MaxRequest), then N bytes:
//	          version 1: u8 1, then four fields, each u16 length + bytes:
//	                     user, service, rhost, code (a TOTP or recovery code)
//	          version 2: u8 2, u8 op, u8 method, then the same four fields
//	                     op 1 "method?": which factor to ask user for
//	                          (method and code are 0 and empty)
//	                     op 2 "verify": code was asked for as method
//	                          (0 TOTP, 1 TPM PIN)
//	answer:   u32 length 2, u8 version (as in the request), u8 value:
//	          verify: verdict (0 allow, 1 deny, 2 locked out)
//	          method?: method (0 TOTP, 1 PIN)
//
// A version-1 request is a TOTP/recovery verification, so a module from
// before PIN keys keeps working.
//
// Linux: the socket is created 0600 inside a 0700 directory, and every
// peer's credentials are checked (SO_PEERCRED): only AllowUID (root) is
// served. Windows: the pipe \\.\pipe\mamori-agent is created with a
// protected DACL granting SYSTEM alone (PipeSystemOnly), as the first instance
// of that name (a pipe someone made before the agent is refused, not
// joined), local clients only, and every client's process token is
// checked: only AllowSIDs (SYSTEM: LogonUI) is served. The DLL checks the
// other way round that the pipe's server runs as SYSTEM.
// pam_mamori.c and credprov/src/cpcore.c implement the client side;
// change all three or none.
package localapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/mfa"
)

// Limits of the protocol.
const (
	Version    = 1 // the first version: verify only
	Version2   = 2 // op and method
	MaxRequest = 1024
	MaxField   = 256
	// Timeout bounds one connection.
	Timeout = 5 * time.Second
)

// Ops of a version-2 request.
const (
	OpMethod uint8 = 1
	OpVerify uint8 = 2
)

// Request is one request. Version 1 (or 0 when encoding) is a TOTP
// verification; version 2 carries Op and Method.
type Request struct {
	Version                    uint8
	Op                         uint8
	Method                     mfa.Method
	User, Service, RHost, Code string
}

// ErrMalformed is any request that does not parse.
var ErrMalformed = errors.New("localapi: malformed request")

// ParseRequest parses a request payload (without the length prefix).
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 1 || len(b) > MaxRequest {
		return Request{}, ErrMalformed
	}
	r := Request{Version: b[0], Op: OpVerify}
	switch b[0] {
	case Version:
		b = b[1:]
	case Version2:
		if len(b) < 3 {
			return Request{}, ErrMalformed
		}
		r.Op, r.Method = b[1], mfa.Method(b[2])
		if (r.Op != OpMethod && r.Op != OpVerify) || (r.Method != mfa.MethodTOTP && r.Method != mfa.MethodPIN) ||
			(r.Op == OpMethod && r.Method != mfa.MethodTOTP) {
			return Request{}, ErrMalformed
		}
		b = b[3:]
	default:
		return Request{}, ErrMalformed
	}
	var f [4]string
	for i := range f {
		if len(b) < 2 {
			return Request{}, ErrMalformed
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > MaxField || n > len(b) {
			return Request{}, ErrMalformed
		}
		f[i] = string(b[:n])
		b = b[n:]
	}
	if len(b) != 0 || f[0] == "" {
		return Request{}, ErrMalformed
	}
	for _, s := range f {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				return Request{}, ErrMalformed
			}
		}
	}
	if r.Op == OpMethod && f[3] != "" {
		return Request{}, ErrMalformed
	}
	r.User, r.Service, r.RHost, r.Code = f[0], f[1], f[2], f[3]
	return r, nil
}

// AppendRequest encodes r with its length prefix (the Go client: tests
// and a future local CLI).
func AppendRequest(dst []byte, r Request) ([]byte, error) {
	body := []byte{Version}
	switch r.Version {
	case 0, Version:
	case Version2:
		body = []byte{Version2, r.Op, byte(r.Method)}
	default:
		return nil, ErrMalformed
	}
	for _, s := range []string{r.User, r.Service, r.RHost, r.Code} {
		if len(s) > MaxField {
			return nil, ErrMalformed
		}
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...), nil
}

// ReadRequest reads one framed request.
func ReadRequest(r io.Reader) (Request, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Request{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > MaxRequest {
		return Request{}, ErrMalformed
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return Request{}, err
	}
	return ParseRequest(b)
}

// Verifier is what the socket asks (agent/mfa.Verifier).
type Verifier interface {
	Verify(ctx context.Context, a mfa.Attempt) mfa.Verdict
	Method(ctx context.Context, user string) mfa.Method
}

// Server serves the socket.
type Server struct {
	Path     string
	Verifier Verifier
	Log      *slog.Logger
	// AllowUID is the only peer user served on Linux: 0 (root) in
	// production.
	AllowUID uint32
	// AllowSIDs are the peer accounts served on Windows (SIDs as
	// strings). Empty: SYSTEM only (S-1-5-18), the account LogonUI runs
	// as.
	AllowSIDs []string
	// PipeSystemOnly is the Windows pipe's security descriptor. Empty:
	// PipeSDDL (SYSTEM only).
	PipeSDDL string

	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start listens and serves in the background; Stop ends it.
func (s *Server) Start(ctx context.Context) error {
	if s.Verifier == nil || s.Path == "" {
		return errors.New("localapi: path and verifier are required")
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := s.listen()
	if err != nil {
		return fmt.Errorf("localapi: %w", err)
	}
	s.ln = ln
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Go(func() { s.serve(ctx) })
	return nil
}

// Stop closes the socket and waits for the connections in flight.
func (s *Server) Stop() {
	if s.ln == nil {
		return
	}
	s.cancel()
	s.ln.Close()
	s.wg.Wait()
	removeSocket(s.Path)
}

func (s *Server) serve(ctx context.Context) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.Log.ErrorContext(ctx, "local socket accept", "error", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.wg.Go(func() { s.handle(ctx, c) })
	}
}

// PipeSystemOnly is the Windows pipe's DACL: protected (no inherited entries),
// generic-all for SYSTEM, nobody else.
const PipeSystemOnly = "D:P(A;;GA;;;SY)"

// SIDSystem is LocalSystem's SID.
const SIDSystem = "S-1-5-18"

// errPeer is a peer that is not allowed.
var errPeer = errors.New("peer not allowed")

// AllowedSID reports whether a Windows client running as sid is served:
// one of allow, or SYSTEM alone when allow is empty.
func AllowedSID(sid string, allow []string) bool {
	if len(allow) == 0 {
		allow = []string{SIDSystem}
	}
	return sid != "" && slices.Contains(allow, sid)
}

func (s *Server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(Timeout))
	if who, err := s.peer(c); err != nil {
		s.Log.WarnContext(ctx, "local socket: peer refused", "peer", who, "error", err)
		return
	}
	req, err := ReadRequest(c)
	if err != nil {
		s.Log.WarnContext(ctx, "local socket: bad request", "error", err)
		return
	}
	var answer byte
	if req.Op == OpMethod {
		answer = byte(s.Verifier.Method(ctx, req.User))
	} else {
		// Gone: the module gave up waiting (its timeout, 5 s by
		// default, passed while this agent was frozen or slow), or the
		// answer could no longer be written (the deadline above). A
		// code found right then is recorded as timed out, not as a login
		// (issue #14 item 10).
		gone := func() bool { return time.Since(start) >= Timeout || peerGone(c) }
		answer = byte(s.Verifier.Verify(ctx, mfa.Attempt{User: req.User, Service: req.Service, RHost: req.RHost,
			Code: req.Code, Method: req.Method, Gone: gone}))
	}
	c.Write([]byte{0, 0, 0, 2, req.Version, answer})
}
