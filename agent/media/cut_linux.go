package media

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsIOCShutdown is FS_IOC_SHUTDOWN (_IOR('X', 125, __u32)): ext4, xfs,
// f2fs (and newer exfat) stop every further write with EIO. x/sys/unix
// does not name it.
const (
	fsIOCShutdown        = 0x8004587d
	fsShutdownNoLogFlush = 0x2 // FS_SHUTDOWN_FLAGS_NOLOGFLUSH: write nothing more, not even the journal
)

// scsiOffline puts a SCSI device (sysfs path of the H:C:T:L directory) in
// the "offline" state: from the moment the write returns the SCSI mid-layer
// fails every command to it with an I/O error, whatever filesystem, cache
// or open file sits above.
func scsiOffline(sysRoot, scsiDev string) error {
	// The kernel matches the state name only with its newline.
	return writeSysfs(filepath.Join(sysRoot, scsiDev, "state"), "offline\n")
}

// shutdownFS stops a mounted filesystem dead where the filesystem knows how
// (FS_IOC_SHUTDOWN without flushing): processes writing to it get EIO at
// once instead of a success whose data can never reach the device. It
// reports whether the filesystem supports it.
func shutdownFS(mountPoint string) (bool, error) {
	fd, err := unix.Open(mountPoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: mountPoint, Err: err}
	}
	defer unix.Close(fd)
	flags := uint32(fsShutdownNoLogFlush)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIOCShutdown, uintptr(unsafe.Pointer(&flags)))
	switch {
	case e == 0:
		return true, nil
	case e == unix.ENOTTY || e == unix.EOPNOTSUPP || e == unix.EINVAL:
		return false, nil
	default:
		return false, fmt.Errorf("FS_IOC_SHUTDOWN %s: %w", mountPoint, e)
	}
}

// detachMount lazily unmounts a mount point (MNT_DETACH): the dead
// filesystem leaves the tree; processes holding files keep them, with
// errors.
func detachMount(mountPoint string) error {
	return unix.Unmount(mountPoint, unix.MNT_DETACH)
}

// replugUSB deauthorises and re-authorises a USB device (its sysfs
// directory): the kernel unbinds and removes its disks, then enumerates it
// again as a new device, which the udev rule and the uevent path make
// read-only before anything can mount it.
func replugUSB(usbDev string) error {
	if err := writeAuthorized(usbDev, false); err != nil {
		return err
	}
	return writeAuthorized(usbDev, true)
}

// replugSCSI deletes a SCSI device (its H:C:T:L directory below sysRoot)
// and rescans its host, so that it comes back as a new disk (eSATA,
// virtio-scsi, FireWire's sbp2, UAS).
func replugSCSI(sysRoot, scsiDev string) error {
	host := ""
	for _, p := range strings.Split(scsiDev, "/") {
		if n, ok := strings.CutPrefix(p, "host"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				host = p
			}
		}
	}
	if host == "" {
		return fmt.Errorf("no SCSI host in %s to rescan", scsiDev)
	}
	if err := writeSysfs(filepath.Join(sysRoot, scsiDev, "delete"), "1"); err != nil {
		return err
	}
	return writeSysfs(filepath.Join(sysRoot, "class/scsi_host", host, "scan"), "- - -")
}

func writeSysfs(p, v string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	return errors.Join(err, f.Close())
}

// maxWriters bounds the evidence of who held a device writable.
const maxWriters = 16

// writersOn lists the processes holding a file on the filesystem of device
// number dev open for writing, as "pid:comm", read from /proc (root sees
// all). At most maxWriters; more says "+N".
func writersOn(procRoot string, dev uint64) []string {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []string
	extra := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		pdir := filepath.Join(procRoot, e.Name())
		fds, err := os.ReadDir(filepath.Join(pdir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(pdir, "fd", fd.Name()), &st) != nil || st.Dev != dev {
				continue
			}
			if !openForWrite(filepath.Join(pdir, "fdinfo", fd.Name())) {
				continue
			}
			if len(out) >= maxWriters {
				extra++
				break
			}
			comm, _ := os.ReadFile(filepath.Join(pdir, "comm"))
			out = append(out, strconv.Itoa(pid)+":"+eventValue(strings.TrimSpace(string(comm))))
			break
		}
	}
	slices.Sort(out)
	if extra > 0 {
		out = append(out, "+"+strconv.Itoa(extra))
	}
	return out
}

// openForWrite reads the flags line of /proc/PID/fdinfo/FD (octal).
func openForWrite(fdinfo string) bool {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			f, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && f&(unix.O_WRONLY|unix.O_RDWR) != 0
		}
	}
	return false
}

func mkdev(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }
