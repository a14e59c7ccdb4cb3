//go:build windows

package isolation

import (
	"context"
	"errors"
	"fmt"
	"net"

	"golang.org/x/net/icmp"
	"golang.org/x/sys/windows"
)

// windowsSystem does the cheap checks: canaries and DNS (through the
// system resolver unless Options.ResolvConf names nameservers). Routes and
// interfaces are not read and nothing is enforced: tier isolation on Windows is the
// Windows Firewall's job (by GPO), and mamori proves it with the canaries.
type windowsSystem struct{}

func newSystem(o Options) (system, error) {
	if o.Netns != "" {
		return nil, fmt.Errorf("network namespaces: %w on Windows", errors.ErrUnsupported)
	}
	return windowsSystem{}, nil
}

func (windowsSystem) dial(ctx context.Context, network, addr string, mark uint32) (net.Conn, error) {
	if mark != 0 {
		return nil, errors.ErrUnsupported
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (windowsSystem) routes() ([]Route, error) { return nil, errNotObserved }

// listenICMP: raw ICMP sockets need an administrator, which the service
// is.
func (windowsSystem) listenICMP(v6 bool, mark uint32) (net.PacketConn, error) {
	if mark != 0 {
		return nil, errors.ErrUnsupported
	}
	if v6 {
		return icmp.ListenPacket("ip6:ipv6-icmp", "::")
	}
	return icmp.ListenPacket("ip4:icmp", "0.0.0.0")
}

func (windowsSystem) interfaces() ([]string, error) { return nil, errNotObserved }

func (windowsSystem) defaultResolvConf() string { return "" }

func (windowsSystem) classify(err error) string {
	switch {
	case errors.Is(err, windows.WSAEACCES):
		return OutcomeBlocked
	case errors.Is(err, windows.WSAECONNREFUSED):
		return OutcomeRefused
	case errors.Is(err, windows.WSAEHOSTUNREACH), errors.Is(err, windows.WSAENETUNREACH):
		return OutcomeUnreachable
	case errors.Is(err, windows.WSAETIMEDOUT):
		return OutcomeTimeout
	}
	return OutcomeError
}

func (windowsSystem) firewall() firewall { return nil }

func (windowsSystem) forwarding() (Forwarding, error) { return Forwarding{}, errNotObserved }

func (windowsSystem) disableForwarding(Forwarding) error { return errors.ErrUnsupported }
