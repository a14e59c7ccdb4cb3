//go:build linux

// Package vmtest boots a real Linux kernel under qemu (software emulation)
// for end-to-end tests: Debian's linux-image-amd64, downloaded and unpacked
// (not installed) and cached in $XDG_CACHE_HOME/mamori-vmtest; an initramfs
// with busybox-static, the kernel modules a test names and a statically
// built guest program from this module, which /init runs. The guest talks
// to the test through the serial console (qemu's stdout), one line at a
// time. Test scaffolding, never shipped.
//
// Tests using it run when MAMORI_VM_TEST=1 or CI=true, as root; Require
// installs what is missing from Debian (qemu-system-x86, busybox-static,
// e2fsprogs, dosfstools, exfatprogs) and skips otherwise.
package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// Require skips t unless VM tests are asked for (MAMORI_VM_TEST=1, or
// CI=true, where a missing part fails instead), needs root, and installs
// the Debian packages the VM needs.
func Require(t *testing.T) {
	t.Helper()
	if os.Getenv("MAMORI_VM_TEST") != "1" && !testenv.InCI() {
		t.Skip("VM end-to-end test: set MAMORI_VM_TEST=1 to run it (CI=true runs it); it installs qemu-system-x86, busybox-static and a Debian kernel")
	}
	testenv.RequireRoot(t)
	ensurePackages(t)
}

func ensurePackages(t *testing.T) {
	t.Helper()
	var missing []string
	for prog, pkg := range map[string]string{"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static", "mkfs.ext4": "e2fsprogs",
		"mkfs.vfat": "dosfstools", "mkfs.exfat": "exfatprogs"} {
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
		testenv.Unavailable(t, fmt.Sprintf("apt-get install %v: %v\n%s", missing, err, Tail(strings.Split(string(out), "\n"), 10)))
	}
}

// Kernel downloads and unpacks the kernel linux-image-amd64 depends on and
// returns the path of its vmlinuz, the unpacked root and the kernel
// version.
func Kernel(t *testing.T) (vmlinuz, root, version string) {
	t.Helper()
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		testenv.Unavailable(t, "apt-cache depends linux-image-amd64: "+err.Error()+" (run apt-get update)")
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
	root = filepath.Join(dir, "root")
	vmlinuz = filepath.Join(root, "boot", "vmlinuz-"+ver)
	if _, err := os.Stat(vmlinuz); err == nil {
		return vmlinuz, root, ver
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
	Run(t, "dpkg", "-x", debs[0], tmp)
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	return vmlinuz, root, ver
}

// Guest is what the initramfs holds besides busybox.
type Guest struct {
	// Package is the import path of the guest program; it is built
	// statically and /init runs it as /guest.
	Package string
	// Modules are loaded with modprobe, in order, before the guest starts;
	// their dependencies come along.
	Modules []string
	// Files maps a path inside the initramfs to a file on the host.
	Files map[string]string
	// Init, when set, is what /init runs after loading the modules,
	// instead of /guest and a power-off (busybox sh; e.g. switch_root into
	// a full system that runs /guest itself).
	Init string
}

// Initramfs builds the initramfs for g into work and returns its path.
// kroot and version are what Kernel returned.
func Initramfs(t *testing.T, work, kroot, version string, g Guest) string {
	t.Helper()
	rd := filepath.Join(work, "initramfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt", "lib/modules/" + version} {
		Must(t, os.MkdirAll(filepath.Join(rd, d), 0o755))
	}
	bb, err := exec.LookPath("busybox")
	Must(t, err)
	CopyFile(t, bb, filepath.Join(rd, "bin/busybox"), 0o755)

	cmd := exec.Command("go", "build", "-o", filepath.Join(rd, "guest"), g.Package)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", g.Package, err, out)
	}
	for in, from := range g.Files {
		CopyFile(t, from, filepath.Join(rd, in), 0o644)
	}

	// Modules and their dependencies, from a modules.dep made by busybox.
	mods := filepath.Join(kroot, "lib/modules", version)
	if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
		Run(t, "busybox", "depmod", "-b", kroot, version)
	}
	dep, err := os.ReadFile(filepath.Join(mods, "modules.dep"))
	Must(t, err)
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
	var loaded []string
	for _, m := range g.Modules {
		p, ok := byName[m]
		if !ok {
			// Built into this kernel (e.g. virtio_pci): nothing to load.
			if isBuiltin(kroot, version, m) {
				continue
			}
			t.Fatalf("kernel %s has no module %s", version, m)
		}
		add(p)
		loaded = append(loaded, m)
	}
	for p := range need {
		CopyFile(t, filepath.Join(mods, p), filepath.Join(rd, "lib/modules", version, p), 0o644)
	}
	CopyFile(t, filepath.Join(mods, "modules.dep"), filepath.Join(rd, "lib/modules", version, "modules.dep"), 0o644)

	init := "#!/bin/busybox sh\n" +
		"/bin/busybox --install -s /bin\n" +
		"mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n" +
		"for m in " + strings.Join(loaded, " ") + "; do modprobe $m || echo MODPROBE-FAILED $m; done\n"
	if g.Init != "" {
		init += g.Init
	} else {
		init += "/guest\npoweroff -f\n"
	}
	Must(t, os.WriteFile(filepath.Join(rd, "init"), []byte(init), 0o755))

	out := filepath.Join(work, "initrd.gz")
	pack := exec.Command("sh", "-c", "find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "+out)
	pack.Dir = rd
	if o, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("pack initramfs: %v\n%s", err, o)
	}
	return out
}

// isBuiltin reports whether module m is compiled into the kernel.
func isBuiltin(kroot, version, m string) bool {
	b, err := os.ReadFile(filepath.Join(kroot, "lib/modules", version, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.ReplaceAll(strings.TrimSuffix(filepath.Base(line), ".ko"), "-", "_") == m {
			return true
		}
	}
	return false
}

// VM is a running qemu.
type VM struct {
	// Lines are the console's lines, closed when qemu exits.
	Lines <-chan string
	// QMP is the path of the QMP socket.
	QMP string

	cmd    *exec.Cmd
	exited chan struct{}
}

// Boot starts qemu with the kernel and initramfs; extra are more qemu
// arguments (devices, drives) and cmdline is added to the kernel's command
// line. The VM is killed when the test ends.
func Boot(t *testing.T, work, vmlinuz, initrd, cmdline string, extra ...string) *VM {
	t.Helper()
	qmp := filepath.Join(work, "qmp.sock")
	os.Remove(qmp)
	args := append([]string{"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "512",
		"-nographic", "-no-reboot", "-nic", "none", "-kernel", vmlinuz, "-initrd", initrd,
		// no_timer_check: under software emulation on a loaded machine the
		// kernel's IO-APIC timer check can miss its ticks and panic at
		// boot ("IO-APIC + timer doesn't work!"); the check is for broken
		// hardware, which qemu's is not.
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet no_timer_check " + cmdline),
		"-qmp", "unix:" + qmp + ",server=on,wait=off"}, extra...)
	cmd := exec.Command("qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	Must(t, err)
	cmd.Stderr = cmd.Stdout
	Must(t, cmd.Start())
	vm := &VM{QMP: qmp, cmd: cmd, exited: make(chan struct{})}
	lines := make(chan string, 4096)
	vm.Lines = lines
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
		close(lines)
	}()
	go func() { cmd.Wait(); close(vm.exited) }()
	t.Cleanup(vm.Kill)
	return vm
}

// Kill stops qemu at once, as a power cut would (SIGKILL: nothing flushed
// by the guest, no clean shutdown), and waits for it to exit.
func (vm *VM) Kill() {
	vm.cmd.Process.Kill()
	<-vm.exited
}

// Run runs a command and fails t if it fails.
func Run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// CopyFile copies from to to, with mode.
func CopyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	Must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	in, err := os.Open(from)
	Must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	Must(t, err)
	_, err = io.Copy(out, in)
	Must(t, err)
	Must(t, out.Close())
}

// Must fails t on err.
func Must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Tail returns the last n of s.
func Tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
