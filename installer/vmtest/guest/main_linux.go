//go:build linux

// Command guest is the guest side of installer/vmtest's
// TestAgentUnderRealUnit: it runs inside a qemu VM whose PID 1 is
// systemd, next to the real agent started from the shipped unit file
// (installer/packaging/linux/mamori-agent.service), and checks what each
// control did from outside the agent. The host says when the agent's
// controls are all enforced (the file /share/go); the guest answers on the
// serial console, one "RESULT <what> key=value…" line per check, then
// "GUEST-DONE", and powers the VM off. Test scaffolding, never shipped.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

func main() {
	con, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	say := func(format string, args ...any) { fmt.Fprintf(con, "\r\n"+format+"\r\n", args...) }
	say("GUEST-UP")
	deadline := time.Now().Add(15 * time.Minute)
	next := time.Now()
	for {
		if time.Now().After(next) {
			// What the agent is doing, for a run that never gets to go.
			next = time.Now().Add(20 * time.Second)
			active, _ := exec.Command("systemctl", "is-active", "mamori-agent").Output()
			say("AGENT %s", strings.TrimSpace(string(active)))
			log, _ := exec.Command("journalctl", "-u", "mamori-agent", "-n", "4", "--no-pager", "-o", "cat").Output()
			for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
				say("AGENT-LOG %s", l)
			}
		}
		if _, err := os.Stat("/share/go"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			say("GUEST-TIMEOUT waiting for /share/go")
			poweroff()
		}
		time.Sleep(500 * time.Millisecond)
	}
	say("RESULT unit %s", unitFacts())
	say("RESULT media %s", media("/dev/sda"))
	say("RESULT isolation %s", isolation())
	say("RESULT mfa %s", mfa())
	say("GUEST-DONE")
	poweroff()
}

func poweroff() {
	exec.Command("systemctl", "poweroff", "--no-block").Run()
	time.Sleep(time.Minute)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// unitFacts: the agent's process as systemd started it: no new
// privileges, a seccomp filter, the bounding set the unit names.
func unitFacts() string {
	out, _ := exec.Command("systemctl", "show", "-p", "MainPID", "--value", "mamori-agent").Output()
	pid := strings.TrimSpace(string(out))
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil || pid == "0" {
		return "pid=" + pid + " error=" + errText(err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	mi, _ := os.ReadFile("/proc/" + pid + "/mountinfo")
	home := "visible"
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == "/home" && strings.Contains(line, "tmpfs") {
			home = "hidden"
		}
	}
	return fmt.Sprintf("pid=%s nnp=%s seccomp=%s capbnd=%s home=%s", pid, kv["NoNewPrivs"], kv["Seccomp"], kv["CapBnd"], home)
}

// media: the stick (plugged in before boot) must refuse writes to the
// block device and a read-write mount.
func media(dev string) string {
	var b strings.Builder
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err == nil {
		ro, ierr := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
		fmt.Fprintf(&b, "blkro=%d", ro)
		if ierr != nil {
			fmt.Fprintf(&b, "blkro-error=%s", errText(ierr))
		}
		_, werr := f.WriteAt(bytes.Repeat([]byte{0xAA}, 4096), 1<<20)
		if werr == nil {
			werr = f.Sync()
		}
		fmt.Fprintf(&b, " raw-write=%s", errText(werr))
		f.Close()
	} else {
		fmt.Fprintf(&b, "blkro=? raw-write=%s", errText(err))
	}
	os.MkdirAll("/mnt/stick", 0o755)
	merr := unix.Mount(dev, "/mnt/stick", "ext4", 0, "")
	fmt.Fprintf(&b, " mount-rw=%s", errText(merr))
	if merr == nil {
		unix.Unmount("/mnt/stick", 0)
	}
	return b.String()
}

// isolation: mamori's own nftables table is in the kernel.
func isolation() string {
	c, err := nftables.New()
	if err != nil {
		return "table=? error=" + errText(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		return "table=? error=" + errText(err)
	}
	for _, t := range ts {
		if t.Name == "mamori" {
			chains, _ := c.ListChainsOfTableFamily(t.Family)
			n := 0
			for _, ch := range chains {
				if ch.Table.Name == "mamori" {
					n++
				}
			}
			return fmt.Sprintf("table=present chains=%d", n)
		}
	}
	return "table=absent"
}

// mfa: pam_mamori.so, through pamtester, asks the agent the unit runs:
// the right code (oathtool, from the secret the host wrote) logs in, a
// wrong one does not; and the agent switched the module on in common-auth
// (pam-auth-update, with /etc writable in its sandbox).
func mfa() string {
	secret, err := os.ReadFile("/share/secret")
	if err != nil {
		return "error=" + errText(err)
	}
	out, err := exec.Command("oathtool", "--totp", "-b", strings.TrimSpace(string(secret))).Output()
	if err != nil {
		return "error=oathtool:" + errText(err)
	}
	code := strings.TrimSpace(string(out))
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	login := func(code string) string {
		cmd := exec.Command("pamtester", "-v", "mamori-unit", "tanaka", "authenticate")
		cmd.Stdin = strings.NewReader(code + "\n")
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), "successfully authenticated") {
			return "ok"
		}
		return "refused"
	}
	common := "absent"
	if b, err := os.ReadFile("/etc/pam.d/common-auth"); err == nil && bytes.Contains(b, []byte("pam_mamori.so")) {
		common = "present"
	}
	return fmt.Sprintf("right=%s wrong=%s common-auth=%s", login(code), login(wrong), common)
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return strconv.Quote(err.Error())
}
