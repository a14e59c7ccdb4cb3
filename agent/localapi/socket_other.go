//go:build !linux

package localapi

import (
	"errors"
	"net"
)

func listen(string) (net.Listener, error) { return nil, errors.ErrUnsupported }

func removeSocket(string) {}

func peerUID(net.Conn) (uint32, error) { return 0, errors.ErrUnsupported }
