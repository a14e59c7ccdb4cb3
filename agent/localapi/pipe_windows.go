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
func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	h := l.next
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	err = windows.ConnectNamedPipe(h, ov)
	switch {
	case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
	case errors.Is(err, windows.ERROR_IO_PENDING):
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
				return nil, net.ErrClosed
			default:
			}
		}
		var n uint32
		if err := windows.GetOverlappedResult(h, ov, &n, false); err != nil {
			return nil, fmt.Errorf("connect pipe client: %w", err)
		}
	default:
		return nil, fmt.Errorf("connect pipe client: %w", err)
	}
	if l.next, err = l.instance(false); err != nil {
		l.next = 0
		windows.CloseHandle(h)
		return nil, fmt.Errorf("create pipe instance: %w", err)
	}
	return newPipeConn(h, true), nil
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
type pipeConn struct {
	h        windows.Handle
	server   bool
	mu       sync.Mutex
	deadline time.Time
	once     sync.Once
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
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	var n uint32
	if write {
		err = windows.WriteFile(c.h, b, &n, ov)
	} else {
		err = windows.ReadFile(c.h, b, &n, ov)
	}
	if err != nil && !errors.Is(err, windows.ERROR_IO_PENDING) {
		return 0, pipeErr(err)
	}
	if r, _ := windows.WaitForSingleObject(ev, wait); r != windows.WAIT_OBJECT_0 {
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
func (s *Server) peer(c net.Conn) (string, error) {
	sid, err := clientSID(c)
	if err != nil {
		return "", err
	}
	if !AllowedSID(sid, s.AllowSIDs) {
		return sid, errPeer
	}
	return sid, nil
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
