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
// Linux: every peer's credentials are checked (SO_PEERCRED). AllowUID
// (root) is served for any user. With OwnUser set (the agent sets it) the
// socket is 0666 in a 0755 directory and any other uid may ask about one
// user only — the account with its own uid — rate-limited per uid (a
// screen locker runs PAM as the user; DESIGN.md: "a non-root caller may at
// most verify its own code"); without it the socket is 0600 in a 0700
// directory and only AllowUID is served. TOTP and recovery codes are
// NFKC-normalised here (NormalizeCode) for every client. Windows: the pipe \\.\pipe\mamori-agent is created with a
// protected DACL granting SYSTEM alone (PipeSystemOnly), as the first instance
// of that name (a pipe someone made before the agent is refused, not
// joined), local clients only, and every client's process token is
// checked: only AllowSIDs (SYSTEM: LogonUI) is served. The DLL checks the
// other way round that the pipe's server runs as SYSTEM.
// pam_mamori.c and credprov/src/cpcore.c implement the client side;
// change all three or none.
package localapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/text/unicode/norm"

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

// ErrInUse is a socket another live process serves.
var ErrInUse = errors.New("another mamori-agent is serving the local socket")

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
	// AllowUID is the peer user served for any login on Linux: 0 (root)
	// in production.
	AllowUID uint32
	// OwnUser, when set, lets a Linux peer that is not AllowUID verify a
	// code for one user only: the account whose uid is the peer's own
	// (SO_PEERCRED), as a screen locker running PAM as the user needs. It
	// maps a login name to its uid (false: unknown). Such peers are
	// limited to OwnUserBurst verifications, refilled at OwnUserRate, per
	// uid, and to MaxOwnUserConns connections at once; past the limit the
	// answer is "locked". Nil: only AllowUID is served, and the socket
	// stays 0600 in a 0700 directory.
	OwnUser func(name string) (uint32, bool)
	// AllowSIDs are the peer accounts served on Windows (SIDs as
	// strings). Empty: SYSTEM only (S-1-5-18), the account LogonUI runs
	// as.
	AllowSIDs []string
	// PipeSystemOnly is the Windows pipe's security descriptor. Empty:
	// PipeSDDL (SYSTEM only).
	PipeSDDL string

	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	limit   ownLimiter
	ownConn atomic.Int32
}

// Limits on peers that verify their own code (OwnUser).
const (
	OwnUserBurst    = 5
	OwnUserRate     = time.Minute / 5 // one more attempt every 12 s
	MaxOwnUserConns = 8
	maxLimitedUIDs  = 4096
)

// peerInfo is who is on the other end of a connection.
type peerInfo struct {
	who        string // for logs: "uid 1000", a SID
	uid        uint32
	privileged bool // AllowUID / an allowed SID: any user
}

// ownLimiter is a token bucket per uid.
type ownLimiter struct {
	mu sync.Mutex
	b  map[uint32]ownBucket
}

type ownBucket struct {
	tokens float64
	last   time.Time
}

func (l *ownLimiter) allow(uid uint32, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b == nil {
		l.b = map[uint32]ownBucket{}
	}
	b, ok := l.b[uid]
	if !ok {
		if len(l.b) >= maxLimitedUIDs {
			// Forget the buckets that are full again; if none is, refuse
			// rather than grow without bound.
			for k, v := range l.b {
				if now.Sub(v.last) >= OwnUserBurst*OwnUserRate {
					delete(l.b, k)
				}
			}
			if len(l.b) >= maxLimitedUIDs {
				return false
			}
		}
		b = ownBucket{tokens: OwnUserBurst, last: now}
	}
	b.tokens = min(OwnUserBurst, b.tokens+float64(now.Sub(b.last))/float64(OwnUserRate))
	b.last = now
	if b.tokens < 1 {
		l.b[uid] = b
		return false
	}
	b.tokens--
	l.b[uid] = b
	return true
}

// NormalizeCode is what the socket does to a TOTP or recovery code
// before the verifier sees it: Unicode NFKC, so full-width digits and
// letters typed with a Japanese input method on (８８７６８７) become
// ASCII and an ideographic space a space (which the verifier strips).
// PINs are left as typed: they are compared with what was enrolled.
func NormalizeCode(code string) string { return norm.NFKC.String(code) }

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
	p, err := s.peer(c)
	if err != nil {
		s.Log.WarnContext(ctx, "local socket: peer refused", "peer", p.who, "error", err)
		return
	}
	if !p.privileged {
		if n := s.ownConn.Add(1); n > MaxOwnUserConns {
			s.ownConn.Add(-1)
			s.Log.WarnContext(ctx, "local socket: too many connections from unprivileged peers", "peer", p.who)
			return
		}
		defer s.ownConn.Add(-1)
	}
	// One read takes the whole request when it is there (the client
	// writes it in one go): on Windows each read is a round trip to the
	// pipe, two per request otherwise.
	req, err := ReadRequest(bufio.NewReaderSize(c, MaxRequest+4))
	if err != nil {
		s.Log.WarnContext(ctx, "local socket: bad request", "error", err)
		return
	}
	if !p.privileged {
		// Only for the peer's own account: a user's screen locker.
		uid, ok := s.OwnUser(req.User)
		if !ok || uid != p.uid {
			s.Log.WarnContext(ctx, "local socket: an unprivileged peer asked for another user", "peer", p.who, "user", req.User)
			return
		}
		if req.Op == OpVerify && !s.limit.allow(p.uid, time.Now()) {
			s.Log.WarnContext(ctx, "local socket: unprivileged peer over its rate; answering locked", "peer", p.who, "user", req.User)
			c.Write([]byte{0, 0, 0, 2, req.Version, byte(mfa.Locked)})
			return
		}
	}
	if req.Method == mfa.MethodTOTP {
		req.Code = NormalizeCode(req.Code)
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
