package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// DefaultSocket is the agent's named pipe; mamori-cp.dll's default too.
const DefaultSocket = `\\.\pipe\mamori-agent`

const pipeBuffer = 4096

// listen creates the pipe's first instance with
// FILE_FLAG_FIRST_PIPE_INSTANCE (a pipe of that name someone made before
// the agent is an error, not a pipe to share), the SYSTEM-only DACL and
// remote clients rejected. Each accepted connection is answered on the
// instance it arrived on; a fresh instance waits for the next client.
// (go-winio's listener leaves its first handle disconnected, which wine
// lets a client connect to and hang on; this one has no such handle.)
func (s *Server) listen() (net.Listener, error) {
	sddl := s.PipeSDDL
	if sddl == "" {
		sddl = PipeSystemOnly
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("pipe security descriptor: %w", err)
	}
	l := &pipeListener{path: s.Path, sa: &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd},
		closed: make(chan struct{})}
	if l.next, err = l.instance(true); err != nil {
		return nil, fmt.Errorf("create pipe %s: %w", s.Path, err)
	}
	return l, nil
}

func removeSocket(string) {}

type pipeListener struct {
	path   string
	sa     *windows.SecurityAttributes
	mu     sync.Mutex
	next   windows.Handle
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) instance(first bool) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(l.path)
	if err != nil {
		return 0, err
	}
	mode := uint32(windows.PIPE_ACCESS_DUPLEX | windows.FILE_FLAG_OVERLAPPED)
	if first {
		mode |= windows.FILE_FLAG_FIRST_PIPE_INSTANCE
	}
	return windows.CreateNamedPipe(p, mode, windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS,
		windows.PIPE_UNLIMITED_INSTANCES, pipeBuffer, pipeBuffer, 0, l.sa)
}

// Accept waits for a client on the waiting instance.
//
// A client that connects and leaves before it is accepted (the DLL does,
// when the pipe's server is not the account it trusts; so can any client
// that gives up) leaves the instance needing DisconnectNamedPipe before it
// can listen again: Accept does that and waits on, rather than failing on
// the same handle forever, which left no instance listening and every
// later client refused as busy. An instance that failed otherwise is
// replaced by a fresh one.
func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		if l.next == 0 {
			h, err := l.instance(false)
			if err != nil {
				return nil, fmt.Errorf("create pipe instance: %w", err)
			}
			l.next = h
		}
		h := l.next
		err := l.connect(h)
		switch {
		case err == nil:
		case errors.Is(err, net.ErrClosed):
			return nil, err
		case errors.Is(err, windows.ERROR_NO_DATA):
			windows.DisconnectNamedPipe(h) // the client left; listen again
			continue
		default:
			// Replace the instance, the new one first: while one
			// instance exists the name stays the agent's.
			if fresh, ierr := l.instance(false); ierr == nil {
				l.next = fresh
				windows.CloseHandle(h)
			}
			return nil, fmt.Errorf("connect pipe client: %w", err)
		}
		// The next instance waits for the next client; if it cannot be
		// made now, this client is still served and the next Accept
		// tries again.
		l.next, _ = l.instance(false)
		if l.next == windows.InvalidHandle {
			l.next = 0
		}
		return newPipeConn(h, true), nil
	}
}

// connect waits for a client on h, or for Close (net.ErrClosed).
func (l *pipeListener) connect(h windows.Handle) error {
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	err = windows.ConnectNamedPipe(h, ov)
	switch {
	case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		return nil
	case errors.Is(err, windows.ERROR_IO_PENDING):
	default:
		return err
	}
	// Wait for a client or Close, whichever is first.
	for {
		r, _ := windows.WaitForSingleObject(ev, 100)
		if r == windows.WAIT_OBJECT_0 {
			break
		}
		select {
		case <-l.closed:
			windows.CancelIoEx(h, ov)
			var n uint32
			windows.GetOverlappedResult(h, ov, &n, true)
			return net.ErrClosed
		default:
		}
	}
	var n uint32
	return windows.GetOverlappedResult(h, ov, &n, false)
}

// Close stops Accept and closes the waiting instance.
func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next != 0 {
		windows.CloseHandle(l.next)
		l.next = 0
	}
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.path) }

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

// pipeConn is one end of a connected pipe with overlapped I/O, so reads
// and writes honour the deadline.
//
// Every call into the pipe is a round trip to wineserver under wine (and
// a kernel transition on Windows), so the connection keeps one event for
// all its I/O instead of making and closing one per read or write, and an
// operation that completes at once (the request already in the pipe's
// buffer, an answer that fits in it) is not waited for. Measured under
// wine: per request, from 24 calls down to 12 (docs/performance.md).
type pipeConn struct {
	h        windows.Handle
	server   bool
	mu       sync.Mutex
	deadline time.Time
	once     sync.Once
	ioMu     sync.Mutex // one operation at a time on ev
	ev       windows.Handle
	closed   bool
}

func newPipeConn(h windows.Handle, server bool) *pipeConn { return &pipeConn{h: h, server: server} }

// Fd is the pipe handle (the peer check reads the client's process).
func (c *pipeConn) Fd() uintptr { return uintptr(c.h) }

func (c *pipeConn) io(b []byte, write bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	wait := uint32(windows.INFINITE)
	if !d.IsZero() {
		left := time.Until(d)
		if left <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		wait = uint32(left / time.Millisecond)
	}
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.ev == 0 {
		// Manual reset; ReadFile and WriteFile reset it as they start.
		ev, err := windows.CreateEvent(nil, 1, 0, nil)
		if err != nil {
			return 0, err
		}
		c.ev = ev
	}
	ov := &windows.Overlapped{HEvent: c.ev}
	var n uint32
	var err error
	if write {
		err = windows.WriteFile(c.h, b, &n, ov)
	} else {
		err = windows.ReadFile(c.h, b, &n, ov)
	}
	if err == nil {
		return int(n), nil // completed at once; n is final
	}
	if !errors.Is(err, windows.ERROR_IO_PENDING) {
		return 0, pipeErr(err)
	}
	if r, _ := windows.WaitForSingleObject(c.ev, wait); r != windows.WAIT_OBJECT_0 {
		windows.CancelIoEx(c.h, ov)
		windows.GetOverlappedResult(c.h, ov, &n, true)
		return int(n), os.ErrDeadlineExceeded
	}
	if err := windows.GetOverlappedResult(c.h, ov, &n, false); err != nil {
		return int(n), pipeErr(err)
	}
	return int(n), nil
}

func pipeErr(err error) error {
	if errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED) {
		return errors.Join(net.ErrClosed, err)
	}
	return err
}

func (c *pipeConn) Read(b []byte) (int, error) {
	n, err := c.io(b, false)
	if n == 0 && err != nil && errors.Is(err, net.ErrClosed) {
		return 0, io.EOF
	}
	return n, err
}

func (c *pipeConn) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := c.io(b[done:], true)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (c *pipeConn) Close() error {
	c.once.Do(func() {
		if c.server {
			windows.FlushFileBuffers(c.h)
			windows.DisconnectNamedPipe(c.h)
		}
		windows.CloseHandle(c.h)
		c.ioMu.Lock() // after CloseHandle, which ends an operation in flight
		c.closed = true
		if c.ev != 0 {
			windows.CloseHandle(c.ev)
			c.ev = 0
		}
		c.ioMu.Unlock()
	})
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr  { return pipeAddr("pipe") }
func (c *pipeConn) RemoteAddr() net.Addr { return pipeAddr("pipe") }
func (c *pipeConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// dial opens the pipe as a client, waiting while every instance is busy.
func dial(ctx context.Context, path string) (net.Conn, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	for {
		h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
			windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
		if err == nil {
			return newPipeConn(h, false), nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// peer reads the client process's account from its token.
func (s *Server) peer(c net.Conn) (peerInfo, error) {
	sid, err := clientSID(c)
	if err != nil {
		return peerInfo{}, err
	}
	if !AllowedSID(sid, s.AllowSIDs) {
		return peerInfo{who: sid}, errPeer
	}
	return peerInfo{who: sid, privileged: true}, nil
}

// clientSID is the SID of the account the pipe client's process runs as.
func clientSID(c net.Conn) (string, error) {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return "", errors.New("not a named pipe connection")
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(windows.Handle(f.Fd()), &pid); err != nil {
		return "", fmt.Errorf("GetNamedPipeClientProcessId: %w", err)
	}
	p, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return "", fmt.Errorf("open client process %d: %w", pid, err)
	}
	defer windows.CloseHandle(p)
	var tok windows.Token
	if err := windows.OpenProcessToken(p, windows.TOKEN_QUERY, &tok); err != nil {
		return "", fmt.Errorf("client process token: %w", err)
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("client token user: %w", err)
	}
	return u.User.Sid.String(), nil
}

// peerGone reports whether the client closed its end of the pipe (the
// credential provider gave up): peeking then fails with a broken pipe.
func peerGone(c net.Conn) bool {
	pc, ok := c.(*pipeConn)
	if !ok {
		return false
	}
	var avail uint32
	r, _, err := procPeekNamedPipe.Call(uintptr(pc.h), 0, 0, 0, uintptr(unsafe.Pointer(&avail)), 0)
	return r == 0 && (err == windows.ERROR_BROKEN_PIPE || err == windows.ERROR_PIPE_NOT_CONNECTED)
}

var procPeekNamedPipe = windows.NewLazySystemDLL("kernel32.dll").NewProc("PeekNamedPipe")
