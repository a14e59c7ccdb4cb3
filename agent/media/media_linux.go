package media

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const platformSupported = true

// netlinkUevents is a NETLINK_KOBJECT_UEVENT socket read by a goroutine
// blocked in poll(2) on the socket and a stop pipe: it wakes the moment the
// kernel sends (no netpoller hop, no periodic timeout), and Close wakes it
// through the pipe.
type netlinkUevents struct {
	fd         int
	stopR      int
	stopW      int
	closeOnce  sync.Once
	readerDone chan struct{}
}

func openUevents() (ueventSource, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// A burst of uevents (a hub full of sticks) must not overflow.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind to the kernel uevent group: %w", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stop pipe: %w", err)
	}
	return &netlinkUevents{fd: fd, stopR: p[0], stopW: p[1]}, nil
}

func (n *netlinkUevents) Read(buf []byte) (int, error) {
	fds := []unix.PollFd{{Fd: int32(n.fd), Events: unix.POLLIN}, {Fd: int32(n.stopR), Events: unix.POLLIN}}
	for {
		nr, from, err := unix.Recvfrom(n.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			// Only the kernel (port 0) is trusted; root processes could
			// otherwise multicast forged uevents to the group.
			if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid == 0 {
				return nr, nil
			}
			continue
		case errors.Is(err, unix.ENOBUFS):
			return 0, errOverflow
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return 0, err
		}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
		if fds[1].Revents != 0 {
			return 0, os.ErrClosed
		}
	}
}

// Close wakes a blocked Read; the descriptors are closed by the reader's
// owner after it returned (see closeFDs).
func (n *netlinkUevents) Close() error {
	n.closeOnce.Do(func() { _, _ = unix.Write(n.stopW, []byte{1}) })
	return nil
}

// closeFDs releases the descriptors once no Read can be running.
func (n *netlinkUevents) closeFDs() {
	unix.Close(n.fd)
	unix.Close(n.stopR)
	unix.Close(n.stopW)
}

func openBlock(node string) (int, error) {
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: node, Err: err}
	}
	return fd, nil
}

// setBlockRO sets or clears the block device's read-only flag (BLKROSET).
func setBlockRO(node string, ro bool) error {
	fd, err := openBlock(node)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	v := 0
	if ro {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(fd, unix.BLKROSET, v); err != nil {
		return fmt.Errorf("BLKROSET %s: %w", node, err)
	}
	return nil
}

// makeBlockRO sets the read-only flag and says whether it was set already
// (BLKROGET, then BLKROSET, on one descriptor).
func makeBlockRO(node string) (was bool, err error) {
	fd, err := openBlock(node)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if v, err := unix.IoctlGetInt(fd, unix.BLKROGET); err == nil && v != 0 {
		return true, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.BLKROSET, 1); err != nil {
		return false, fmt.Errorf("BLKROSET %s: %w", node, err)
	}
	return false, nil
}

// getBlockRO reads the flag back (BLKROGET).
func getBlockRO(node string) (bool, error) {
	fd, err := openBlock(node)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	v, err := unix.IoctlGetInt(fd, unix.BLKROGET)
	if err != nil {
		return false, fmt.Errorf("BLKROGET %s: %w", node, err)
	}
	return v != 0, nil
}

// remountRO makes the filesystem at mountPoint read-only (superblock
// remount: every bind mount of it follows).
func remountRO(mountPoint string) error {
	return unix.Mount("", mountPoint, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
}

// dropWriteBits removes every write permission from a device node.
func dropWriteBits(node string) error {
	st, err := os.Stat(node)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o222 == 0 {
		return nil
	}
	return os.Chmod(node, st.Mode().Perm()&^0o222)
}

// restoreWriteBits gives a device node back the write bits udev gives it
// (owner, and group unless the group is root's) after dropWriteBits: an
// allow-listed device or an exception.
func restoreWriteBits(node string) error {
	st, err := os.Stat(node)
	if err != nil {
		return err
	}
	perm := st.Mode().Perm()
	if perm&0o222 != 0 {
		return nil
	}
	add := os.FileMode(0o200)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Gid != 0 {
		add |= 0o020
	}
	return os.Chmod(node, perm|add)
}

// writeAuthorized (de)authorises a USB device or interface through sysfs,
// as USBGuard does: a deauthorised interface is unbound from its driver.
func writeAuthorized(sysDir string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return writeSysfs(sysDir+"/authorized", v)
}

// readAttr reads a small sysfs attribute with three system calls (no
// fstat, no poller registration as os.ReadFile does): this is on the path
// from uevent to read-only.
func readAttr(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: p, Err: err}
	}
	return buf[:n], nil
}
