package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultSocket is where pam_mamori.so looks by default.
const DefaultSocket = "/run/mamori/agent.sock"

func (s *Server) listen() (net.Listener, error) {
	path := s.Path
	dir := filepath.Dir(path)
	// Root only, unless unprivileged peers may verify their own code
	// (OwnUser): then anyone may connect, and peer() and handle() decide.
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if s.OwnUser != nil {
		dirMode, sockMode = 0o755, 0o666
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return nil, err
	}
	// A socket another agent still answers on is never removed: the
	// second agent refuses to start instead (removing it would leave the
	// first agent serving nothing, and every login failing closed).
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	removeSocket(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, sockMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// LookupUID is OwnUser for production: the uid of a local account
// (os/user; with the agent built without cgo it reads /etc/passwd, so a
// directory-only account (SSSD, LDAP) cannot use the unprivileged path and
// its screen locker is refused as before).
func LookupUID(name string) (uint32, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// removeSocket removes a stale socket, and nothing else.
func removeSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
}

// peer checks the connecting process's uid (SO_PEERCRED).
func (s *Server) peer(c net.Conn) (peerInfo, error) {
	uid, err := peerUID(c)
	if err != nil {
		return peerInfo{}, err
	}
	p := peerInfo{who: "uid " + strconv.FormatUint(uint64(uid), 10), uid: uid, privileged: uid == s.AllowUID}
	if !p.privileged && s.OwnUser == nil {
		return p, errPeer
	}
	return p, nil
}

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *syscall.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}

// peerGone reports whether the asker closed its end (pam_mamori.so gave
// up after its timeout): a peek without waiting reads end-of-file. Data
// or nothing to read yet means it is still there.
func peerGone(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err == syscall.ECONNRESET || err == syscall.EPIPE
	})
	return gone
}
