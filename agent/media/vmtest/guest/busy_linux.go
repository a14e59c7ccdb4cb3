package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/media"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// busyStick is one stick of the busy-mount scenario: mounted read-write
// and held by a writer before the agent starts.
type busyStick struct {
	name, serial, fstype string
	node, mnt            string
	held                 *os.File // open for writing on the stick
	dir                  *os.File // the mount's root, for new files after the cut
	pre                  string   // SHA-256 of the whole device before the agent acted
}

// runBusy is issue #16's scenario: sticks mounted read-write with a file
// open for writing (ext4, vfat, exFAT), a member of group "disk" who can
// write through SCSI pass-through, and only then the agent in enforce
// mode. From the moment it acts not one more byte may reach the sticks:
// the guest prints each device's hash before ("PRE") and after ("POST",
// read from the re-plugged device), and the host compares its image files
// after qemu exited.
func runBusy() error {
	ctx := context.Background()
	sticks := []*busyStick{
		{name: "busy1", serial: "BUSYEXT4", fstype: "ext4"},
		{name: "busy2", serial: "BUSYVFAT", fstype: "vfat"},
		{name: "busy3", serial: "BUSYEXFAT", fstype: "exfat"},
	}
	fmt.Println("GUEST-READY")
	for i, s := range sticks {
		node, err := plug(s.name, s.serial)
		if err != nil {
			return err
		}
		s.node, s.mnt = node, fmt.Sprintf("/busy%d", i+1)
		if err := udevPerms(node); err != nil {
			return err
		}
		if err := os.MkdirAll(s.mnt, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(node, s.mnt, s.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s %s: %w", s.fstype, node, err)
		}
		if s.held, err = os.OpenFile(filepath.Join(s.mnt, "held.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		if _, err := s.held.WriteString("written before the agent started\n"); err != nil {
			return err
		}
		if err := s.held.Sync(); err != nil {
			return err
		}
		if s.dir, err = os.Open(s.mnt); err != nil {
			return err
		}
	}
	// The hole of item 3 on today's kernel: a member of "disk" writes the
	// last sector of the first stick through SG_IO, past nothing.
	sg1, err := sgNode(sticks[0].node)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT sgio-before sg=%s disk=%s\n", asDiskMember(sg1, sticks[0].node, "rw"), asDiskMember(sticks[0].node, sticks[0].node, "rw"))
	unix.Sync()
	for _, s := range sticks {
		if s.pre, err = hashDevice(s.node); err != nil {
			return err
		}
		fmt.Printf("PRE %s %s\n", s.name, s.pre)
	}

	// The agent starts, in enforce mode with the default policy
	// (storage: read-only).
	sp, err := spool.Open("/spool", spool.Options{})
	if err != nil {
		return err
	}
	defer sp.Close()
	m := media.New(media.Options{Emitter: daemon.NewEmitter(sp, nil), UdevRule: "/60-mamori-media.rules", UdevOverrideDirs: []string{}})
	defer m.Close()
	start := time.Now()
	if err := m.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}); err != nil {
		fmt.Println("APPLY-ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
	}
	fmt.Printf("RESULT apply ms=%d\n", time.Since(start).Milliseconds())
	if evs, err := sp.Pending(1000, 1<<20); err == nil {
		for _, e := range evs {
			fmt.Printf("EVENT %s %s %s %q\n", e.Kind, e.Attributes["device"], e.Attributes["serial"], e.Attributes["error"])
		}
	}

	// The writers go on: appending to the held file, a new file beside it.
	for _, s := range sticks {
		_, werr := s.held.WriteString("written after the agent acted\n")
		serr := s.held.Sync()
		nerr := newFile(s.dir, "after.txt")
		fmt.Printf("RESULT %s write=%s fsync=%s new-file=%s\n", s.name, errName(werr), errName(serr), nerr)
	}
	unix.Sync()

	// The sticks come back, as new devices, read-only.
	for _, s := range sticks {
		node, err := waitSerial(s.serial, s.node)
		if err != nil {
			return err
		}
		if err := waitRO(node, true); err != nil {
			return err
		}
		post, err := hashDevice(node)
		if err != nil {
			return err
		}
		fmt.Printf("POST %s %s\n", s.name, post)
		fmt.Printf("RESULT %s same=%v node=%s\n", s.name, post == s.pre, node)
		if s.name == "busy1" {
			// udev gives the new nodes group "disk" rw after the agent
			// acted: the read-back closes them again.
			sg, err := sgNode(node)
			if err != nil {
				return err
			}
			if err := udevPerms(node); err != nil {
				return err
			}
			st, err := m.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("RESULT sgio-after status=%s sg=%s disk=%s disk-ro=%s\n", st.State, asDiskMember(sg, node, "rw"),
				asDiskMember(node, node, "rw"), asDiskMember(sg, node, "ro"))
		}
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT status=%s detail=%q\n", st.State, st.Detail)
	evs, err := sp.Pending(1000, 1<<20)
	if err != nil {
		return err
	}
	if err := blockBusy(ctx, m); err != nil {
		return err
	}
	if err := exceptionFiles(ctx, m, sp); err != nil {
		return err
	}
	if evs, err = sp.Pending(1000, 1<<20); err != nil {
		return err
	}
	for _, e := range evs {
		fmt.Printf("EVENT %s %s %s %q\n", e.Kind, e.Attributes["device"], e.Attributes["serial"], e.Attributes["error"])
		if e.Control == "media" && e.Kind == media.KindWritesCut {
			a := e.Attributes
			since := "?"
			if at, err := time.Parse(time.RFC3339Nano, a["offline_at"]); err == nil {
				since = strconv.FormatInt(at.Sub(start).Milliseconds(), 10)
			}
			fmt.Printf("CUT %s mount=%s fstype=%s method=%s fs_shutdown=%s offline_after_start_ms=%s cut_ms=%s writers=%s\n",
				a["serial"], a["mount_point"], a["fstype"], a["method"], a["fs_shutdown"], since, a["cut_ms"], strings.ReplaceAll(a["writers"], " ", ","))
		}
	}
	return nil
}

// blockBusy is item 5: with storage: block, a stick mounted read-write
// and held by a writer is severed before its USB interface goes away, so
// the writer gets errors instead of successes whose data is lost.
func blockBusy(ctx context.Context, m *media.Media) error {
	s := &busyStick{name: "busy4", serial: "BUSYBLOCK", fstype: "ext4", mnt: "/busy4"}
	node, err := plug(s.name, s.serial)
	if err != nil {
		return err
	}
	if err := waitRO(node, true); err != nil { // the agent made it read-only
		return err
	}
	// An administrator mounted it read-write before the policy said block
	// (the agent's read-only flag cleared by hand, as root can).
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.IoctlSetPointerInt(fd, unix.BLKROSET, 0)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(node, s.mnt, s.fstype, 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", node, err)
	}
	if s.held, err = os.OpenFile(filepath.Join(s.mnt, "held.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	if _, err := s.held.WriteString("written before the policy said block\n"); err != nil {
		return err
	}
	if err := s.held.Sync(); err != nil {
		return err
	}
	unix.Sync()
	if s.pre, err = hashDevice(node); err != nil {
		return err
	}
	fmt.Printf("PRE %s %s\n", s.name, s.pre)
	if err := m.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"storage": "block"}}); err != nil {
		fmt.Println("APPLY-ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
	}
	_, werr := s.held.WriteString("written after the policy said block\n")
	serr := s.held.Sync()
	fmt.Printf("RESULT busy4 write=%s fsync=%s\n", errName(werr), errName(serr))
	unix.Sync()
	return nil
}

// exceptionFiles is item 6: a stick allowed by an exception is mounted
// read-write after it was allowed, another process writes a file on it,
// and the agent records the file (path, size, SHA-256, process).
func exceptionFiles(ctx context.Context, m *media.Media, sp *spool.Spool) error {
	exc := []policy.Exception{{ID: "6f1c0e8e-0000-4000-8000-0000000e0005", Vendor: "46f4", Product: "0001",
		Serial: "EXCEPTED5", Expires: time.Now().Add(time.Hour)}}
	if err := m.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{policy.SettingExceptions: policy.FormatExceptions(exc)}}); err != nil {
		return err
	}
	node, err := plug("busy5", "EXCEPTED5")
	if err != nil {
		return err
	}
	if err := waitRO(node, false); err != nil {
		return err
	}
	if err := os.MkdirAll("/busy5", 0o755); err != nil {
		return err
	}
	if err := unix.Mount(node, "/busy5", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", node, err)
	}
	// The mount-table watch marks it; then a user copies a file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if st.Evidence["file_log.mounts"] == "1" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the excepted stick's mount was not marked within 10s: %v", st.Evidence)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := exec.Command("/bin/sh", "-c", "printf '住民票 CSV' > /busy5/export.csv; sleep 1; :").CombinedOutput()
	if err != nil {
		return fmt.Errorf("write under the exception: %v %s", err, out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := sp.Pending(1000, 1<<20)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Kind == media.KindFileWritten {
				a := e.Attributes
				fmt.Printf("RESULT file path=%s size=%s sha256=%s process=%s exception=%s serial=%s\n",
					a["path"], a["size_bytes"], a["sha256"], a["process"], a["exception_id"], a["serial"])
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("RESULT file none")
	return nil
}

// udevPerms gives a disk, its partitions and its SCSI pass-through nodes
// what Debian's udev rules give them (root:disk 0660); the guest has no udev.
func udevPerms(node string) error {
	nodes := []string{node}
	if sg, err := sgNode(node); err == nil {
		nodes = append(nodes, sg)
	}
	base := filepath.Base(node)
	if ents, err := os.ReadDir("/sys/class/block/" + base); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), base) {
				nodes = append(nodes, "/dev/"+e.Name())
			}
		}
	}
	if ents, err := os.ReadDir("/sys/class/block/" + base + "/device/bsg"); err == nil && len(ents) > 0 {
		nodes = append(nodes, "/dev/bsg/"+ents[0].Name())
	}
	for _, n := range nodes {
		if err := os.Chown(n, 0, 6); err != nil {
			return err
		}
		if err := os.Chmod(n, 0o660); err != nil {
			return err
		}
	}
	return nil
}

func sgNode(node string) (string, error) {
	ents, err := os.ReadDir("/sys/class/block/" + filepath.Base(node) + "/device/scsi_generic")
	if err != nil || len(ents) == 0 {
		return "", fmt.Errorf("no sg node for %s: %v", node, err)
	}
	return "/dev/" + ents[0].Name(), nil
}

// waitSerial waits for the stick with serial to be back under another
// node than old.
func waitSerial(serial, old string) (string, error) {
	c := media.Classifier{Root: "/sys"}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/sys/class/block")
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "sd") || strings.ContainsAny(e.Name()[2:], "0123456789") {
				continue
			}
			d, err := c.Block(e.Name())
			if err == nil && d.Serial == serial && d.SizeBytes > 0 && "/dev/"+d.Name != old {
				return "/dev/" + d.Name, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("stick %s did not come back within 60s", serial)
}

// hashDevice reads the whole device with O_DIRECT (the device's bytes,
// not the page cache) and returns its SHA-256.
func hashDevice(node string) (string, error) {
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", node, err)
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return "", err
	}
	defer unix.Munmap(buf)
	h := sha256.New()
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", node, err)
		}
		if n == 0 {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		h.Write(buf[:n])
	}
}

func newFile(dir *os.File, name string) string {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "open:" + errName(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("a new file after the agent acted\n")); err != nil {
		return "write:" + errName(err)
	}
	if err := unix.Fsync(fd); err != nil {
		return "fsync:" + errName(err)
	}
	return "ok"
}

// asDiskMember runs this program again as uid 1000 in group "disk" (gid 6)
// to send SCSI WRITE(10) of the device's last sector through node (the sg
// node or the disk itself), opened "rw" or "ro".
func asDiskMember(node, disk, mode string) string {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{"MAMORI_SGIO=" + node, "MAMORI_SGIO_DISK=" + disk, "MAMORI_SGIO_MODE=" + mode}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 6, Groups: []uint32{6}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "child:" + errName(err)
	}
	return strings.TrimSpace(string(out))
}

// sgioChild is the child's side of asDiskMember; it prints one word.
func sgioChild(node, disk, mode string) string {
	sectors, err := os.ReadFile("/sys/class/block/" + filepath.Base(disk) + "/size")
	if err != nil {
		return "size:" + errName(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(sectors)), 10, 64)
	if err != nil || n == 0 {
		return "size:bad"
	}
	flags := unix.O_RDWR
	if mode == "ro" {
		flags = unix.O_RDONLY
	}
	fd, err := unix.Open(node, flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open:" + errName(err)
	}
	defer unix.Close(fd)
	// Command, sense and data in one page the garbage collector never moves.
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return "mmap:" + errName(err)
	}
	cmd, sense, data := page[0:10], page[64:96], page[512:1024]
	copy(data, "SG_IO WRITE(10) from a member of group disk\n")
	cmd[0] = 0x2a // WRITE(10)
	binary.BigEndian.PutUint32(cmd[2:6], uint32(n-1))
	binary.BigEndian.PutUint16(cmd[7:9], 1)
	hdr := sgIOHdr{InterfaceID: 'S', DxferDirection: -2 /* SG_DXFER_TO_DEV */, CmdLen: 10, MxSbLen: uint8(len(sense)),
		DxferLen: 512, Dxferp: uintptr(unsafe.Pointer(&data[0])), Cmdp: uintptr(unsafe.Pointer(&cmd[0])),
		Sbp: uintptr(unsafe.Pointer(&sense[0])), Timeout: 10000}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0x2285 /* SG_IO */, uintptr(unsafe.Pointer(&hdr))); e != 0 {
		return errName(e)
	}
	if hdr.Status != 0 || hdr.HostStatus != 0 || hdr.DriverStatus != 0 {
		return fmt.Sprintf("scsi-status:%d/%d/%d", hdr.Status, hdr.HostStatus, hdr.DriverStatus)
	}
	return "ok"
}

// sgIOHdr is struct sg_io_hdr (scsi/sg.h) on 64-bit Linux.
type sgIOHdr struct {
	InterfaceID    int32
	DxferDirection int32
	CmdLen         uint8
	MxSbLen        uint8
	IovecCount     uint16
	DxferLen       uint32
	Dxferp         uintptr
	Cmdp           uintptr
	Sbp            uintptr
	Timeout        uint32
	Flags          uint32
	PackID         int32
	_              [4]byte
	UsrPtr         uintptr
	Status         uint8
	MaskedStatus   uint8
	MsgStatus      uint8
	SbLenWr        uint8
	HostStatus     uint16
	DriverStatus   uint16
	Resid          int32
	Duration       uint32
	Info           uint32
	_              [4]byte
}
