// Command guest is the program the VM end-to-end test (agent/media/vmtest)
// boots as the agent inside a real Debian kernel: it runs the media control
// with the real spool, asks the host over the serial console to hot-plug
// USB sticks ("PLUG name serial"), and reports what the sticks allow
// ("RESULT …"). It is test scaffolding, not a product binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/media"
	"github.com/mamori-dev/mamori/agent/spool"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func main() {
	if node := os.Getenv("MAMORI_SGIO"); node != "" { // asDiskMember's child
		fmt.Println(sgioChild(node, os.Getenv("MAMORI_SGIO_DISK"), os.Getenv("MAMORI_SGIO_MODE")))
		return
	}
	scenario := run
	cmdline, _ := os.ReadFile("/proc/cmdline")
	switch {
	case strings.Contains(string(cmdline), "mamori.scenario=busy"):
		scenario = runBusy
	case strings.Contains(string(cmdline), "mamori.scenario=buses"):
		scenario = runBuses
	}
	err := scenario()
	if err != nil {
		fmt.Println("GUEST-ERROR", err)
	}
	fmt.Println("GUEST-DONE")
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	ctx := context.Background()
	sp, err := spool.Open("/spool", spool.Options{})
	if err != nil {
		return err
	}
	defer sp.Close()
	m := media.New(media.Options{Emitter: daemon.NewEmitter(sp, nil), UdevRule: "/60-mamori-media.rules", UdevOverrideDirs: []string{}})
	defer m.Close()
	err = m.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{"allow": "46f4:0001:ALLOWED1"}})
	if err != nil {
		return err
	}
	fmt.Println("GUEST-READY")

	// 1. A stick that is not allow-listed (removable=on).
	d1, err := plug("stick1", "BLOCKED1")
	if err != nil {
		return err
	}
	if err := waitRO(d1, true); err != nil {
		return err
	}
	fmt.Printf("RESULT stick1 raw-write=%s mount-rw=%s fs-write=%s\n", rawWrite(d1), mountRW(d1, "/mnt1"), fsWriteRO(d1, "/mnt1"))

	// 2. An allow-listed stick (removable=off): writable, mounted rw.
	d2, err := plug("stick2", "ALLOWED1")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // give the control the chance to act wrongly
	if err := waitRO(d2, false); err != nil {
		return err
	}
	fmt.Printf("RESULT stick2 raw-write=%s mount-rw=%s fs-write=%s\n", rawWrite(d2), mountRW(d2, "/mnt2"), fsWrite("/mnt2/a"))

	// 3. Another blocked stick plugged while stick2 is mounted read-write.
	d3, err := plug("stick3", "BLOCKED3")
	if err != nil {
		return err
	}
	if err := waitRO(d3, true); err != nil {
		return err
	}
	fmt.Printf("RESULT stick3 raw-write=%s mount-rw=%s stick2-fs-write=%s\n", rawWrite(d3), mountRW(d3, "/mnt3"), fsWrite("/mnt2/b"))

	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT status=%s detail=%q\n", st.State, st.Detail)
	evs, err := sp.Pending(1000, 1<<20)
	if err != nil {
		return err
	}
	var kinds []string
	for _, e := range evs {
		if e.Control == "media" {
			kinds = append(kinds, e.Kind+":"+e.Attributes["device"]+":"+e.Attributes["serial"])
		}
	}
	fmt.Printf("RESULT spool %s\n", strings.Join(kinds, " "))
	return nil
}

// plug asks the host to hot-plug a stick and waits for its disk.
func plug(name, serial string) (string, error) {
	fmt.Printf("PLUG %s %s\n", name, serial)
	c := media.Classifier{Root: "/sys"}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/sys/class/block")
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "sd") || strings.ContainsAny(e.Name()[2:], "0123456789") {
				continue
			}
			d, err := c.Block(e.Name())
			if err == nil && d.Serial == serial && d.SizeBytes > 0 {
				fmt.Printf("FOUND %s %s class=%s bus=%s removable=%v\n", serial, d.Name, d.Class, d.Bus, d.Removable)
				return "/dev/" + d.Name, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("stick %s (serial %s) did not appear within 60s", name, serial)
}

func waitRO(node string, want bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.ENXIO || err == unix.ENOENT {
			// The disk is still being added: sysfs (where the guest
			// found it) shows it a moment before its node opens. Seen
			// once in CI when a new stick took the name of one that had
			// just been re-plugged (busy4 as sda).
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %w after 5s", node, err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		v, err := unix.IoctlGetInt(fd, unix.BLKROGET)
		unix.Close(fd)
		if err != nil {
			return err
		}
		if (v != 0) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: read-only=%v after 5s, want %v", node, v != 0, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	default:
		return strings.ReplaceAll(err.Error(), " ", "_")
	}
}

// rawWrite writes the last 4 KiB of the device (the filesystem lives at
// the start).
func rawWrite(node string) string {
	fd, err := unix.Open(node, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open:" + errName(err)
	}
	defer unix.Close(fd)
	size, err := unix.Seek(fd, 0, 2)
	if err != nil {
		return errName(err)
	}
	buf := make([]byte, 4096)
	_, err = unix.Pwrite(fd, buf, size-4096)
	if err == nil {
		err = unix.Fsync(fd)
	}
	return errName(err)
}

func mountRW(node, dir string) string {
	_ = os.MkdirAll(dir, 0o755)
	return errName(unix.Mount(node, dir, "ext4", 0, ""))
}

// fsWriteRO mounts read-only (what a user gets) and tries to write.
func fsWriteRO(node, dir string) string {
	if err := unix.Mount(node, dir, "ext4", unix.MS_RDONLY, ""); err != nil {
		return "mount-ro:" + errName(err)
	}
	return fsWrite(filepath.Join(dir, "x"))
}

func fsWrite(p string) string {
	f, err := os.Create(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return errName(pe.Err)
		}
		return errName(err)
	}
	_, err = f.WriteString("data")
	if err == nil {
		err = f.Sync()
	}
	return errName(errors.Join(err, f.Close()))
}
