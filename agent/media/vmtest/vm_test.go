//go:build linux

// Package vmtest is the media control's end-to-end test on a real kernel:
// Debian's linux-image-amd64 booted under qemu (software emulation), an
// initramfs with busybox-static, the kernel modules for USB storage and
// ext4, and the statically built guest program running the real media
// control and spool. USB sticks are hot-plugged through QMP.
//
// It runs when MAMORI_VM_TEST=1 or CI=true, as root, and installs what it
// needs from Debian (qemu-system-x86, busybox-static, e2fsprogs; the
// kernel package is downloaded and unpacked, not installed). The kernel is
// cached in $XDG_CACHE_HOME/mamori-vmtest.
package vmtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
)

func TestVMHotplugUSBStick(t *testing.T) {
	if os.Getenv("MAMORI_VM_TEST") != "1" && !testenv.InCI() {
		t.Skip("VM end-to-end test: set MAMORI_VM_TEST=1 to run it (CI=true runs it); it installs qemu-system-x86, busybox-static and a Debian kernel")
	}
	testenv.RequireRoot(t)
	ensurePackages(t)
	kroot, ver := kernel(t)
	work := t.TempDir()
	initrd := buildInitramfs(t, work, kroot, ver)
	sticks := map[string]string{}
	for _, s := range []string{"stick1", "stick2", "stick3"} {
		img := filepath.Join(work, s+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(32 << 20)
		f.Close()
		run(t, "mkfs.ext4", "-q", "-F", img)
		sticks[s] = img
	}
	console := boot(t, work, filepath.Join(kroot, "boot", "vmlinuz-"+ver), initrd, sticks)

	results := map[string]map[string]string{}
	for _, line := range console {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "RESULT" {
			kv := map[string]string{}
			for _, p := range f[2:] {
				k, v, _ := strings.Cut(p, "=")
				kv[k] = v
			}
			if strings.Contains(f[1], "=") {
				k, v, _ := strings.Cut(f[1], "=")
				kv[k] = v
				results["status"] = kv
				continue
			}
			results[f[1]] = kv
			if f[1] == "spool" {
				results["spool"] = map[string]string{"events": strings.Join(f[2:], " ")}
			}
		}
	}
	diag := func() string { return "console:\n" + strings.Join(tail(console, 80), "\n") }
	want := map[string]map[string]string{
		"stick1": {"raw-write": "EPERM", "fs-write": "EROFS"},
		"stick2": {"raw-write": "ok", "mount-rw": "ok", "fs-write": "ok"},
		"stick3": {"raw-write": "EPERM", "stick2-fs-write": "ok"},
	}
	for s, kv := range want {
		for k, v := range kv {
			if got := results[s][k]; got != v {
				t.Errorf("%s %s = %q, want %q", s, k, got, v)
			}
		}
	}
	for _, s := range []string{"stick1", "stick3"} {
		if got := results[s]["mount-rw"]; got == "ok" || got == "" {
			t.Errorf("%s: a read-write mount of the blocked stick gave %q", s, got)
		}
	}
	if got := results["status"]["status"]; got != "CONTROL_STATE_ENFORCED" {
		t.Errorf("status %q", got)
	}
	ev := results["spool"]["events"]
	for _, re := range []string{`set_read_only:sd[a-z]+:BLOCKED1`, `allowed:sd[a-z]+:ALLOWED1`, `set_read_only:sd[a-z]+:BLOCKED3`} {
		if !regexp.MustCompile(re).MatchString(ev) {
			t.Errorf("spool lacks %s: %q", re, ev)
		}
	}
	for _, line := range console {
		if strings.HasPrefix(line, "RESULT") || strings.HasPrefix(line, "FOUND") {
			t.Log(line)
		}
	}
	if t.Failed() {
		t.Log(diag())
	}
}

func ensurePackages(t *testing.T) {
	t.Helper()
	var missing []string
	for prog, pkg := range map[string]string{"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, pkg)
		}
	}
	if out, err := exec.Command("busybox", "--list").Output(); err != nil || !bytes.Contains(out, []byte("\ndepmod\n")) {
		missing = append(missing, "busybox-static") // no busybox, or one without depmod
	}
	if len(missing) == 0 {
		return
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	t.Logf("installing %v", missing)
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("apt-get install %v: %v\n%s", missing, err, tail(strings.Split(string(out), "\n"), 10)))
	}
}

// kernel downloads and unpacks the kernel linux-image-amd64 depends on and
// returns the unpacked root and the kernel version.
func kernel(t *testing.T) (string, string) {
	t.Helper()
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		testenv.Unavailable(t, "apt-cache depends linux-image-amd64: "+err.Error())
	}
	m := regexp.MustCompile(`Depends: (linux-image-([0-9][^\s]*-amd64))`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("cannot find the kernel package in:\n%s", out)
	}
	pkg, ver := string(m[1]), string(m[2])
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "mamori-vmtest", pkg)
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+ver)); err == nil {
		return root, ver
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("apt-get download %s: %v\n%s", pkg, err, out))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("apt-get download %s left no .deb in %s", pkg, dir)
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	run(t, "dpkg", "-x", debs[0], tmp)
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	return root, ver
}

// The modules the guest loads, in order; their dependencies come along.
var guestModules = []string{"xhci_pci", "usb_storage", "sd_mod", "crc32c_generic", "ext4"}

func buildInitramfs(t *testing.T, work, kroot, ver string) string {
	t.Helper()
	rd := filepath.Join(work, "initramfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "spool", "lib/modules/" + ver} {
		must(t, os.MkdirAll(filepath.Join(rd, d), 0o755))
	}
	bb, err := exec.LookPath("busybox")
	must(t, err)
	copyFile(t, bb, filepath.Join(rd, "bin/busybox"), 0o755)

	// Guest program: statically built from this module.
	cmd := exec.Command("go", "build", "-o", filepath.Join(rd, "guest"), "github.com/mamori-dev/mamori/agent/media/vmtest/guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest: %v\n%s", err, out)
	}
	copyFile(t, "../../../installer/udev/60-mamori-media.rules", filepath.Join(rd, "60-mamori-media.rules"), 0o644)

	// Modules and their dependencies, from a modules.dep made by busybox.
	mods := filepath.Join(kroot, "lib/modules", ver)
	if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
		run(t, "busybox", "depmod", "-b", kroot, ver)
	}
	dep, err := os.ReadFile(filepath.Join(mods, "modules.dep"))
	must(t, err)
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, line := range strings.Split(string(dep), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[k] = strings.Fields(v)
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(k), ".ko"), "-", "_")
		byName[name] = k
	}
	need := map[string]bool{}
	var add func(string)
	add = func(p string) {
		if need[p] {
			return
		}
		need[p] = true
		for _, d := range deps[p] {
			add(d)
		}
	}
	for _, m := range guestModules {
		p, ok := byName[m]
		if !ok {
			t.Fatalf("kernel %s has no module %s", ver, m)
		}
		add(p)
	}
	for p := range need {
		copyFile(t, filepath.Join(mods, p), filepath.Join(rd, "lib/modules", ver, p), 0o644)
	}
	copyFile(t, filepath.Join(mods, "modules.dep"), filepath.Join(rd, "lib/modules", ver, "modules.dep"), 0o644)

	init := "#!/bin/busybox sh\n" +
		"/bin/busybox --install -s /bin\n" +
		"mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n" +
		"for m in " + strings.Join(guestModules, " ") + "; do modprobe $m || echo MODPROBE-FAILED $m; done\n" +
		"/guest\n" +
		"poweroff -f\n"
	must(t, os.WriteFile(filepath.Join(rd, "init"), []byte(init), 0o755))

	out := filepath.Join(work, "initrd.gz")
	pack := exec.Command("sh", "-c", "find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "+out)
	pack.Dir = rd
	if o, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("pack initramfs: %v\n%s", err, o)
	}
	return out
}

// boot runs the VM, answers the guest's PLUG requests over QMP and
// returns the console lines.
func boot(t *testing.T, work, vmlinuz, initrd string, sticks map[string]string) []string {
	t.Helper()
	qmpSock := filepath.Join(work, "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "512",
		"-nographic", "-no-reboot", "-nic", "none", "-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet", "-device", "qemu-xhci,id=xhci",
		"-qmp", "unix:"+qmpSock+",server=on,wait=off")
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
		close(lines)
	}()
	var console []string
	var qmp *qmpConn
	deadline := time.After(4 * time.Minute)
	removable := map[string]bool{"stick1": true}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if !slices.Contains(console, "GUEST-DONE") {
					t.Fatalf("the VM stopped before the guest finished; %s", diagnose(console))
				}
				return console
			}
			console = append(console, line)
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "PLUG" {
				if qmp == nil {
					if qmp, err = dialQMP(qmpSock); err != nil {
						t.Fatalf("QMP: %v", err)
					}
					defer qmp.Close()
				}
				name, serial := f[1], f[2]
				if err := qmp.plug(name, sticks[name], serial, removable[name]); err != nil {
					t.Fatalf("hot-plug %s: %v; %s", name, err, diagnose(console))
				}
			}
		case <-deadline:
			t.Fatalf("the VM test did not finish within 4 minutes; %s", diagnose(console))
		}
	}
}

// diagnose says what the console shows about how far the boot got.
func diagnose(console []string) string {
	all := strings.Join(console, "\n")
	hint := "no console output at all: qemu did not start the kernel (check qemu-system-x86_64 runs; no KVM is needed)"
	switch {
	case strings.Contains(all, "GUEST-ERROR"):
		hint = "the guest program reported an error"
	case strings.Contains(all, "MODPROBE-FAILED"):
		hint = "a kernel module did not load (module list or modules.dep)"
	case strings.Contains(all, "GUEST-READY"):
		hint = "the guest ran but a hot-plugged stick did not behave"
	case strings.Contains(all, "Kernel panic"):
		hint = "kernel panic (initramfs or /init broken?)"
	case len(console) > 0:
		hint = "the kernel booted but the guest program never became ready"
	}
	return hint + "\nlast console lines:\n" + strings.Join(tail(console, 60), "\n")
}

type qmpConn struct {
	c  net.Conn
	rd *bufio.Reader
}

func dialQMP(sock string) (*qmpConn, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{c: c, rd: bufio.NewReader(c)}
	if _, err := q.rd.ReadString('\n'); err != nil { // greeting
		c.Close()
		return nil, err
	}
	if err := q.do("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.c.Close() }

func (q *qmpConn) do(cmd string, args any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	q.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return err
	}
	for {
		line, err := q.rd.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &resp); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %s", cmd, resp.Error.Desc)
		}
		if resp.Return != nil {
			return nil
		}
		// an asynchronous event: keep reading
	}
}

func (q *qmpConn) plug(name, img, serial string, removable bool) error {
	if err := q.do("blockdev-add", map[string]any{"driver": "raw", "node-name": name,
		"file": map[string]any{"driver": "file", "filename": img}}); err != nil {
		return err
	}
	return q.do("device_add", map[string]any{"driver": "usb-storage", "bus": "xhci.0", "drive": name,
		"id": name, "removable": removable, "serial": serial})
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
