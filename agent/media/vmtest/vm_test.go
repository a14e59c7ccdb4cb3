//go:build linux

// Package vmtest is the media control's end-to-end test on a real kernel:
// Debian's linux-image-amd64 booted under qemu (software emulation), an
// initramfs with busybox-static, the kernel modules for USB storage and
// ext4, and the statically built guest program running the real media
// control and spool. USB sticks are hot-plugged through QMP.
//
// It runs when MAMORI_VM_TEST=1 or CI=true, as root; internal/vmtest
// installs what it needs and boots the VM.
package vmtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/vmtest"
)

func TestVMHotplugUSBStick(t *testing.T) {
	vmtest.Require(t)
	vmlinuz, kroot, ver := vmtest.Kernel(t)
	work := t.TempDir()
	initrd := vmtest.Initramfs(t, work, kroot, ver, vmtest.Guest{
		Package: "github.com/mamori-dev/mamori/agent/media/vmtest/guest",
		Modules: guestModules,
		Files:   map[string]string{"60-mamori-media.rules": "../../../installer/udev/60-mamori-media.rules"},
	})
	sticks := map[string]string{}
	for _, s := range []string{"stick1", "stick2", "stick3"} {
		img := filepath.Join(work, s+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(32 << 20)
		f.Close()
		vmtest.Run(t, "mkfs.ext4", "-q", "-F", img)
		sticks[s] = img
	}
	console := boot(t, work, vmlinuz, initrd, "", sticks, map[string]bool{"stick1": true})

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
	diag := func() string { return "console:\n" + strings.Join(vmtest.Tail(console, 80), "\n") }
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

// TestVMBusyMountCut is issue #16's items 1-3 on a real kernel: three
// sticks (ext4, vfat, exFAT) mounted read-write, each with a file held
// open for writing, and a member of group "disk" who can write through
// SCSI pass-through, all before the agent starts in enforce mode. From
// the moment the agent acts not one more byte may reach a stick: the
// image files on the host must be byte-identical to what the guest read
// from the devices just before it started the agent.
func TestVMBusyMountCut(t *testing.T) {
	vmtest.Require(t)
	vmlinuz, kroot, ver := vmtest.Kernel(t)
	work := t.TempDir()
	initrd := vmtest.Initramfs(t, work, kroot, ver, vmtest.Guest{
		Package: "github.com/mamori-dev/mamori/agent/media/vmtest/guest",
		Modules: guestModules,
		Files:   map[string]string{"60-mamori-media.rules": "../../../installer/udev/60-mamori-media.rules"},
	})
	sticks := map[string]string{}
	for name, mkfs := range map[string][]string{
		"busy1": {"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"},
		"busy2": {"mkfs.vfat"},
		"busy3": {"mkfs.exfat"},
		"busy4": {"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"},
		"busy5": {"mkfs.ext4", "-q", "-F"},
	} {
		img := filepath.Join(work, name+".img")
		f, err := os.Create(img)
		vmtest.Must(t, err)
		vmtest.Must(t, f.Truncate(32<<20))
		vmtest.Must(t, f.Close())
		vmtest.Run(t, mkfs[0], append(mkfs[1:], img)...)
		sticks[name] = img
	}
	console := boot(t, work, vmlinuz, initrd, "mamori.scenario=busy", sticks,
		map[string]bool{"busy1": true, "busy2": true, "busy3": true, "busy4": true, "busy5": true})
	if !slices.Contains(console, "GUEST-DONE") || slices.ContainsFunc(console, func(l string) bool { return strings.HasPrefix(l, "GUEST-ERROR") }) {
		t.Fatalf("the guest failed; %s", diagnose(console))
	}
	res := map[string]map[string]string{}
	pre := map[string]string{}
	var cuts []string
	for _, line := range console {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "RESULT":
			key, _, _ := strings.Cut(f[1], "=") // "RESULT status=…" is keyed status
			if res[key] == nil {
				res[key] = map[string]string{}
			}
			for _, p := range f[1:] {
				if k, v, ok := strings.Cut(p, "="); ok {
					res[key][k] = v
				}
			}
			t.Log(line)
		case len(f) == 3 && f[0] == "PRE":
			pre[f[1]] = f[2]
		case len(f) >= 2 && f[0] == "CUT":
			cuts = append(cuts, line)
			t.Log(line)
		case strings.HasPrefix(line, "APPLY-ERROR"):
			t.Log(line)
		}
	}
	// The hole exists before the agent: group "disk" writes through SG_IO.
	if r := res["sgio-before"]; r["sg"] != "ok" || r["disk"] != "ok" {
		t.Errorf("before the agent a member of disk could not write through SG_IO (%v): the scenario does not show the hole", r)
	}
	for _, name := range []string{"busy1", "busy2", "busy3", "busy4"} {
		r := res[name]
		// Not one byte more: the image as the guest read it before the agent.
		img, err := os.Open(sticks[name])
		vmtest.Must(t, err)
		h := sha256.New()
		_, err = io.Copy(h, img)
		img.Close()
		vmtest.Must(t, err)
		if got := hex.EncodeToString(h.Sum(nil)); pre[name] == "" || got != pre[name] {
			t.Errorf("%s: the image changed after the agent acted (before %s, after %s): bytes reached the stick", name, pre[name], got)
		}
		if r["same"] != "true" && name != "busy4" { // busy4 is blocked: it does not come back
			t.Errorf("%s: the re-plugged device reads differently from before (%v)", name, r)
		}
		// The writer is told: its data is not on the stick.
		if r["fsync"] == "ok" {
			t.Errorf("%s: fsync after the cut succeeded (%v): a writer would believe its data is on the stick", name, r)
		}
	}
	// Block means refused, not lost: the writer of busy4 is told at once.
	if r := res["busy4"]; r["write"] != "EIO" || r["fsync"] != "EIO" {
		t.Errorf("storage: block on a busy ext4 stick: %v, want write and fsync EIO", r)
	}
	// What left under an exception is recorded, with the file's hash.
	want := sha256.Sum256([]byte("住民票 CSV"))
	if r := res["file"]; r["path"] != "/export.csv" || r["sha256"] != hex.EncodeToString(want[:]) || r["size"] != "13" ||
		r["process"] != "sh" || r["serial"] != "EXCEPTED5" || r["exception"] == "" {
		t.Errorf("file written under the exception: %v", r)
	}
	if len(cuts) != 4 {
		t.Errorf("%d writes_cut events, want 4 (one per stick)", len(cuts))
	}
	for _, c := range cuts {
		if strings.Contains(c, "BUSYBLOCK") {
			if !strings.Contains(c, "method=usb-deauthorise") || !strings.Contains(c, "fs_shutdown=true") {
				t.Errorf("block cut evidence: %s", c)
			}
			continue
		}
		if !strings.Contains(c, "method=usb-replug") || !regexp.MustCompile(`writers=[0-9]+:guest`).MatchString(c) {
			t.Errorf("writes_cut evidence incomplete: %s", c)
		}
		if strings.Contains(c, "fstype=ext4") && !strings.Contains(c, "fs_shutdown=true") {
			t.Errorf("ext4 was not shut down: %s", c)
		}
		// p99 < 1 s from the policy reaching the agent to "no more writes".
		m := regexp.MustCompile(`offline_after_start_ms=([0-9]+)`).FindStringSubmatch(c)
		if m == nil {
			t.Errorf("no offline time in %s", c)
		} else if ms, _ := strconv.Atoi(m[1]); ms >= 1000 {
			t.Errorf("no more writes only %d ms after the agent started, want < 1000: %s", ms, c)
		}
	}
	// Pass-through closed on the re-plugged stick, after udev reopened it.
	if r := res["sgio-after"]; r["sg"] != "open:EACCES" || r["disk"] != "open:EACCES" || r["disk-ro"] != "EPERM" || r["status"] != "CONTROL_STATE_ENFORCED" {
		t.Errorf("SG_IO after the agent: %v, want sg and disk refused to open for writing, WRITE(10) on a read-only descriptor EPERM, ENFORCED", r)
	}
	if got := res["status"]["status"]; got != "CONTROL_STATE_ENFORCED" {
		t.Errorf("final status %q (%v)", got, res["status"])
	}
	if t.Failed() {
		t.Log("console:\n" + strings.Join(vmtest.Tail(console, 120), "\n"))
	}
}

// The modules the guest loads, in order; their dependencies come along.
var guestModules = []string{"xhci_pci", "usb_storage", "sd_mod", "sg", "crc32c_generic", "ext4",
	"vfat", "nls_cp437", "nls_ascii", "exfat"}

// boot runs the VM, answers the guest's PLUG requests over QMP and
// returns the console lines.
func boot(t *testing.T, work, vmlinuz, initrd, cmdline string, sticks map[string]string, removable map[string]bool) []string {
	t.Helper()
	vm := vmtest.Boot(t, work, vmlinuz, initrd, cmdline, "-device", "qemu-xhci,id=xhci")
	lines := vm.Lines
	var err error
	var console []string
	var qmp *qmpConn
	deadline := time.After(4 * time.Minute)
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
					if qmp, err = dialQMP(vm.QMP); err != nil {
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
	return hint + "\nlast console lines:\n" + strings.Join(vmtest.Tail(console, 60), "\n")
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
