package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// DefaultSocket is the agent's named pipe; mamori-cp.dll's default too.
const DefaultSocket = `\\.\pipe\mamori-agent`

// listen creates the pipe as the first instance of its name (go-winio
// opens it with FILE_CREATE: a pipe someone else made first is an error,
// not a pipe to share) with the SYSTEM-only DACL, remote clients
// rejected.
func (s *Server) listen() (net.Listener, error) {
	sddl := s.PipeSDDL
	if sddl == "" {
		sddl = PipeSystemOnly
	}
	return winio.ListenPipe(s.Path, &winio.PipeConfig{SecurityDescriptor: sddl, InputBufferSize: 4096, OutputBufferSize: 4096})
}

func removeSocket(string) {}

func dial(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, path)
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
