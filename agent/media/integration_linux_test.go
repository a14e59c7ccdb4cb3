package media

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// sticks makes backing images in a directory of its own; a loop device
// stands in for a USB stick exactly when its backing file is one of them,
// so loop devices other tests attach at the same time are left alone.
type sticks struct{ dir string }

func (s *sticks) image(t testing.TB, size int64) string { return backingFile(t, s.dir, size) }

// realControl builds the control on the real /sys, /dev and mountinfo,
// with loop devices standing in for sticks.
func realControl(t testing.TB) (*Media, *recorder, *sticks) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Unavailable(t, "no /dev/loop-control (modprobe loop)")
	}
	st := &sticks{dir: t.TempDir()}
	rec := newRecorder()
	m := New(Options{Emitter: rec, UdevRule: "../../installer/udev/60-mamori-media.rules", UdevOverrideDirs: []string{}})
	m.o.override = standIn(st.dir)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, rec, st
}

func enforce(settings map[string]string) *mamoriv1.ControlPolicy {
	return &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: settings}
}

// waitFor waits until an event of kind names device.
func waitFor(t testing.TB, rec *recorder, kind, device string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if slices.Contains(rec.devices(kind), device) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no %s event for %s within 5s; events: %+v", kind, device, rec.events)
}

// writeRaw writes one block through fd at offset 0.
func writeRaw(fd int) error {
	buf := make([]byte, 4096)
	_, err := unix.Pwrite(fd, buf, 0)
	return err
}

// A stick plugged in while the control runs: the real uevent arrives over
// netlink, the disk gets BLKROSET, and a write through a descriptor opened
// before (open succeeds after BLKROSET too; the write is what fails).
func TestIntegrationHotplugReadOnly(t *testing.T) {
	testenv.Short(t)
	m, rec, st := realControl(t)
	must(t, m.Apply(context.Background(), enforce(nil)))

	l := freeLoop(t)
	l.attach(t, st.image(t, 16<<20), false)
	waitFor(t, rec, KindSetReadOnly, l.Name)

	if !l.readOnly(t) {
		t.Fatal("BLKROGET says writable after set_read_only")
	}
	if err := writeRaw(l.fd); !errors.Is(err, unix.EPERM) {
		t.Fatalf("write through the already-open fd: %v, want EPERM", err)
	}
	s := status(t, m)
	if s.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || !strings.Contains(s.Evidence["device."+l.Name], "read-only") {
		t.Fatalf("status %v %q %v", s.State, s.Detail, s.Evidence)
	}
	// The read-back is real and acts: clear the flag behind the control's
	// back; the next round sets it again and says so.
	l.clearRO(t)
	if s := status(t, m); s.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED || !l.readOnly(t) {
		t.Fatalf("after tampering: status %v %q read-only=%v, want ENFORCED and read-only again", s.State, s.Detail, l.readOnly(t))
	}
	waitFor(t, rec, KindReapplied, l.Name)
	// Again at once: within the back-off it is reported, not fixed.
	l.clearRO(t)
	if s := status(t, m); s.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(s.Detail, l.Name+" is writable") {
		t.Fatalf("tampered within the back-off: status %v %q", s.State, s.Detail)
	}
	status(t, m)
	waitFor(t, rec, KindStillWritable, l.Name)
}

// A partitioned stick: the disk and the partition the kernel adds after
// it both become read-only, each as it appears.
func TestIntegrationPartitions(t *testing.T) {
	testenv.Short(t)
	m, rec, st := realControl(t)
	must(t, m.Apply(context.Background(), enforce(nil)))
	l := freeLoop(t)
	l.attach(t, st.image(t, 16<<20), true)
	waitFor(t, rec, KindSetReadOnly, l.Name)
	l.addPartition(t, 16<<20)
	part := l.Name + "p1"
	waitFor(t, rec, KindSetReadOnly, part)
	fd, err := unix.Open("/dev/"+part, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := writeRaw(fd); !errors.Is(err, unix.EPERM) {
		t.Fatalf("write to %s: %v, want EPERM", part, err)
	}
}

// A stick whose ext4 filesystem is mounted read-write before the control
// starts: the start-up scan sets the disk read-only and remounts the
// filesystem read-only (BLKROSET alone leaves a mounted filesystem
// writing).
func TestIntegrationRemountsMountedFilesystem(t *testing.T) {
	testenv.Short(t)
	mkfs := testenv.LookPath(t, "mkfs.ext4", "e2fsprogs")
	m, rec, st := realControl(t)
	l := freeLoop(t)
	img := st.image(t, 32<<20)
	runCmd(t, mkfs, "-q", "-F", img)
	l.attach(t, img, false)
	dir := mountExt4(t, l.Node)
	must(t, os.WriteFile(filepath.Join(dir, "before"), []byte("writable"), 0o644))

	must(t, m.Apply(context.Background(), enforce(nil))) // start-up scan
	waitFor(t, rec, KindRemountReadOnly, l.Name)

	if err := os.WriteFile(filepath.Join(dir, "after"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to the remounted filesystem: %v, want EROFS", err)
	}
	if err := writeRaw(l.fd); !errors.Is(err, unix.EPERM) {
		t.Fatalf("write to the raw device: %v, want EPERM", err)
	}
	if s := status(t, m); s.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Fatalf("status %v %q", s.State, s.Detail)
	}
}

// A file held open for writing makes the remount fail (EBUSY): the control
// must say so (FAILED, naming the mount), not claim ENFORCED.
func TestIntegrationRemountBusyIsReported(t *testing.T) {
	testenv.Short(t)
	mkfs := testenv.LookPath(t, "mkfs.ext4", "e2fsprogs")
	m, rec, st := realControl(t)
	l := freeLoop(t)
	img := st.image(t, 32<<20)
	runCmd(t, mkfs, "-q", "-F", img)
	l.attach(t, img, false)
	dir := mountExt4(t, l.Node)
	f, err := os.Create(filepath.Join(dir, "held-open"))
	must(t, err)
	defer f.Close()

	must(t, m.Apply(context.Background(), enforce(nil)))
	waitFor(t, rec, KindEnforcementError, l.Name)
	s := status(t, m)
	if s.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(s.Detail, "mounted read-write on "+dir) {
		t.Fatalf("status %v %q", s.State, s.Detail)
	}
	if !l.readOnly(t) {
		t.Error("the block device is not read-only")
	}
}

// Monitor mode reports and changes nothing.
func TestIntegrationMonitorChangesNothing(t *testing.T) {
	testenv.Short(t)
	m, rec, st := realControl(t)
	must(t, m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}))
	l := freeLoop(t)
	l.attach(t, st.image(t, 16<<20), false)
	waitFor(t, rec, KindWouldBlock, l.Name)
	if l.readOnly(t) {
		t.Fatal("monitor mode made the device read-only")
	}
	if err := writeRaw(l.fd); err != nil {
		t.Fatalf("monitor mode: write failed: %v", err)
	}
	if s := status(t, m); s.State != mamoriv1.ControlState_CONTROL_STATE_MONITORING {
		t.Fatalf("status %v %q", s.State, s.Detail)
	}
}

// An allow-listed stick that the udev rule made read-only is made
// writable again by the control.
func TestIntegrationAllowListed(t *testing.T) {
	testenv.Short(t)
	m, rec, st := realControl(t)
	l := freeLoop(t)
	must(t, m.Apply(context.Background(), enforce(map[string]string{"allow": "0781:5581:" + standInSerial})))
	// Read-only before the attach, as the udev rule leaves it (the flag
	// survives attach).
	must(t, unix.IoctlSetPointerInt(l.fd, unix.BLKROSET, 1))
	l.attach(t, st.image(t, 16<<20), false)
	waitFor(t, rec, KindAllowed, l.Name)
	deadline := time.Now().Add(2 * time.Second)
	for l.readOnly(t) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := writeRaw(l.fd); err != nil {
		t.Fatalf("allow-listed stick: write failed: %v", err)
	}
}

func mountExt4(t testing.TB, node string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(node, dir, "ext4", 0, ""); err != nil {
		testenv.Unavailable(t, "cannot mount ext4 from "+node+": "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// An optical drive: BLKROSET does not stop burning through SCSI
// pass-through (SG_IO), whose write commands need a descriptor opened for
// writing (or CAP_SYS_RAWIO). The control removes the write bits of the sr
// node and of its sg node; afterwards a non-root user cannot open either
// for writing. A loop device stands in for sr, a character node for sg,
// in a private /dev.
func TestIntegrationOpticalNodesClosedToWriters(t *testing.T) {
	testenv.Short(t)
	m, rec, st := realControl(t)
	dev := t.TempDir()
	must(t, os.Chmod(dev, 0o755))
	must(t, os.Chmod(filepath.Dir(dev), 0o755)) // t.TempDir parents are 0700
	m.o.DevRoot = dev
	inner := m.o.override
	m.o.override = func(d Device) Device {
		d = inner(d)
		if d.Class == ClassStorage {
			d.Class, d.SCSIGeneric = ClassOptical, "sg-test"
		}
		return d
	}
	l := freeLoop(t)
	var s unix.Stat_t
	must(t, unix.Stat(l.Node, &s))
	srNode, sgNode := filepath.Join(dev, l.Name), filepath.Join(dev, "sg-test")
	must(t, unix.Mknod(srNode, unix.S_IFBLK|0o666, int(s.Rdev)))
	must(t, unix.Mknod(sgNode, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Chmod(srNode, 0o666))
	must(t, os.Chmod(sgNode, 0o666))
	nobodyCanWrite := func(node string) bool {
		cmd := exec.Command("dd", "if=/dev/zero", "of="+node, "bs=512", "count=1", "conv=notrunc")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return cmd.Run() == nil
	}
	if !nobodyCanWrite(sgNode) {
		t.Fatal("set-up: nobody cannot write the sg node before the control acts")
	}
	must(t, m.Apply(context.Background(), enforce(nil)))
	l.attach(t, st.image(t, 16<<20), false)
	waitFor(t, rec, KindSetReadOnly, l.Name)
	for _, n := range []string{srNode, sgNode} {
		fi, err := os.Stat(n)
		must(t, err)
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s mode %v: write bits left", n, fi.Mode().Perm())
		}
		if nobodyCanWrite(n) {
			t.Errorf("a non-root user still opens %s for writing", n)
		}
	}
	if err := writeRaw(l.fd); !errors.Is(err, unix.EPERM) {
		t.Errorf("raw write: %v, want EPERM", err)
	}
}
