package media

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopDev is a loop device the test owns. It is attached with the
// LOOP_CONFIGURE ioctl directly (no losetup: that costs ~1.7 ms alone).
type loopDev struct {
	Index int
	Name  string // loopN
	Node  string // /dev/loopN
	fd    int    // O_RDWR, opened before the control acts
}

// freeLoop reserves the number of a free loop device and opens it
// read-write. The read-only flag survives detach, so it is cleared here.
func freeLoop(t testing.TB) *loopDev {
	t.Helper()
	l := &loopDev{}
	if err := l.reserve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.detach()
		if l.fd >= 0 {
			_ = unix.IoctlSetPointerInt(l.fd, unix.BLKROSET, 0)
			unix.Close(l.fd)
		}
	})
	return l
}

// reserve finds a free loop device, opens it and clears its read-only flag.
func (l *loopDev) reserve() error {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/loop-control: %w (modprobe loop)", err)
	}
	defer unix.Close(ctl)
	idx, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	l.Index, l.Name, l.Node = idx, "loop"+strconv.Itoa(idx), "/dev/loop"+strconv.Itoa(idx)
	if l.fd, err = unix.Open(l.Node, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		l.fd = -1
		return fmt.Errorf("open %s: %w", l.Node, err)
	}
	if err := unix.IoctlSetPointerInt(l.fd, unix.BLKROSET, 0); err != nil {
		return fmt.Errorf("clear read-only on %s: %w", l.Node, err)
	}
	return nil
}

func (l *loopDev) clearRO(t testing.TB) {
	t.Helper()
	if err := unix.IoctlSetPointerInt(l.fd, unix.BLKROSET, 0); err != nil {
		t.Fatalf("clear read-only on %s: %v", l.Node, err)
	}
}

// attach binds backing to the loop device; partscan asks the kernel for
// partition devices (loopNpM).
// Another process may take the free device first (EBUSY): then the next
// free one is tried.
func (l *loopDev) attach(t testing.TB, backing string, partscan bool) {
	t.Helper()
	for range 20 {
		err := l.tryAttach(backing, partscan)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EBUSY) {
			t.Fatal(err)
		}
		unix.Close(l.fd)
		if err := l.reserve(); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no free loop device after 20 tries")
}

func (l *loopDev) tryAttach(backing string, partscan bool) error {
	bf, err := os.OpenFile(backing, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer bf.Close()
	cfg := unix.LoopConfig{Fd: uint32(bf.Fd())}
	if partscan {
		cfg.Info.Flags = unix.LO_FLAGS_PARTSCAN
	}
	copy(cfg.Info.File_name[:], backing)
	if err := unix.IoctlLoopConfigure(l.fd, &cfg); err != nil {
		return fmt.Errorf("LOOP_CONFIGURE %s: %w", l.Node, err)
	}
	return nil
}

// detach unbinds the backing file. Since Linux 6.x LOOP_CLR_FD only marks
// the device for clearing on its last close, so the descriptor is closed,
// the detach awaited, and the device opened again for the next round.
func (l *loopDev) detach() {
	_ = unix.IoctlSetInt(l.fd, unix.LOOP_CLR_FD, 0)
	unix.Close(l.fd)
	for range 2000 {
		b, err := os.ReadFile("/sys/class/block/" + l.Name + "/size")
		if err != nil || strings.TrimSpace(string(b)) == "0" {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	fd, err := unix.Open(l.Node, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	l.fd = fd
}

func (l *loopDev) readOnly(t testing.TB) bool {
	t.Helper()
	v, err := unix.IoctlGetInt(l.fd, unix.BLKROGET)
	if err != nil {
		t.Fatalf("BLKROGET %s: %v", l.Node, err)
	}
	return v != 0
}

// backingFile makes a sparse file of size bytes in dir.
func backingFile(t testing.TB, dir string, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "stick-*.img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// addPartition adds partition 1 from 1 MiB to the end with the BLKPG
// ioctl, as a partition-table parser would (this build machine's kernel
// has none); the kernel sends the partition's "add" uevent.
func (l *loopDev) addPartition(t testing.TB, size int64) {
	t.Helper()
	p := unix.BlkpgPartition{Start: 1 << 20, Length: size - 1<<20, Pno: 1}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_ADD_PARTITION, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		t.Fatalf("BLKPG add partition to %s: %v", l.Node, errno)
	}
}

// standInSerial is the USB serial every stand-in stick reports.
const standInSerial = "MAMORI-TEST-STICK"

// standIn returns a classification override under which loop devices
// backed by a file in dir (and their partitions) are USB sticks and every
// other device of this machine is left alone.
func standIn(dir string) func(Device) Device {
	return func(d Device) Device {
		if d.DevType != "usb_interface" && strings.HasPrefix(d.Disk, "loop") {
			b, err := os.ReadFile("/sys/block/" + d.Disk + "/loop/backing_file")
			if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
				d.Class, d.Bus, d.Reason = ClassStorage, "usb", "test stand-in for a USB stick"
				d.Vendor, d.Product, d.Serial = "0781", "5581", standInSerial
				return d
			}
		}
		d.Class, d.Reason = ClassNone, "not a test device"
		return d
	}
}
