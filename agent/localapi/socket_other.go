//go:build !linux && !windows

package localapi

import (
	"context"
	"errors"
	"net"
)

// DefaultSocket: mamori has no local API on this system.
const DefaultSocket = ""

func (s *Server) listen() (net.Listener, error) { return nil, errors.ErrUnsupported }

func removeSocket(string) {}

func dial(context.Context, string) (net.Conn, error) { return nil, errors.ErrUnsupported }

func (s *Server) peer(net.Conn) (string, error) { return "", errors.ErrUnsupported }

func peerGone(net.Conn) bool { return false }
