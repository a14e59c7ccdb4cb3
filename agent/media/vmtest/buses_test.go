//go:build linux

package vmtest

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/vmtest"
)

// TestVMBusesClassified is issue #16's item 4 on a real kernel: the real
// classifier reads the real sysfs of disks on every bus qemu can present.
// Each disk has its own size, which identifies it in the guest's answer.
//
// With MAMORI_VM_CAPTURE=DIR it also writes the sysfs the classifier read
// into DIR (testdata/sysfs/vm-buses is such a capture; the unit tests
// classify it without a VM).
func TestVMBusesClassified(t *testing.T) {
	vmtest.Require(t)
	vmlinuz, kroot, ver := vmtest.Kernel(t)
	work := t.TempDir()
	initrd := vmtest.Initramfs(t, work, kroot, ver, vmtest.Guest{
		Package: "github.com/mamori-dev/mamori/agent/media/vmtest/guest",
		Modules: []string{"nvme", "ahci", "virtio_pci", "virtio_scsi", "sd_mod", "sg", "sdhci_pci", "mmc_block", "xhci_pci", "usb_storage"},
	})
	type disk struct {
		mib        int
		class, bus string
		what       string
	}
	disks := map[string]disk{
		"nvint":  {16, "none", "nvme", "NVMe on the root complex (internal)"},
		"nvhot":  {24, "storage", "nvme", "NVMe hot-plugged into a PCIe root port"},
		"sata":   {40, "none", "ata", "SATA disk on the q35 AHCI"},
		"vscsi":  {48, "storage", "other", "virtio-scsi disk marked removable"},
		"sdcard": {64, "storage", "mmc", "SD card on sdhci-pci"},
		"usb":    {32, "storage", "usb", "USB stick"},
	}
	img := map[string]string{}
	for name, d := range disks {
		p := filepath.Join(work, name+".img")
		f, err := os.Create(p)
		vmtest.Must(t, err)
		vmtest.Must(t, f.Truncate(int64(d.mib)<<20))
		vmtest.Must(t, f.Close())
		img[name] = p
	}
	drive := func(name string) []string {
		return []string{"-drive", "if=none,format=raw,id=" + name + ",file=" + img[name]}
	}
	args := []string{"-device", "pcie-root-port,id=rp1,chassis=1,slot=1"}
	args = append(args, drive("nvint")...)
	args = append(args, "-device", "nvme,drive=nvint,serial=INTNVME")
	args = append(args, drive("sata")...)
	args = append(args, "-device", "ide-hd,drive=sata,bus=ide.2")
	args = append(args, "-device", "virtio-scsi-pci,id=vs")
	args = append(args, drive("vscsi")...)
	args = append(args, "-device", "scsi-hd,drive=vscsi,bus=vs.0,removable=on")
	args = append(args, "-device", "sdhci-pci")
	args = append(args, drive("sdcard")...)
	args = append(args, "-device", "sd-card,drive=sdcard")
	args = append(args, "-device", "qemu-xhci,id=xhci")
	args = append(args, drive("usb")...)
	args = append(args, "-device", "usb-storage,bus=xhci.0,drive=usb,serial=USBSTICK,removable=on")
	cmdline := "mamori.scenario=buses"
	capture := os.Getenv("MAMORI_VM_CAPTURE")
	if capture != "" {
		cmdline += " mamori.capture=1"
	}
	vm := vmtest.Boot(t, work, vmlinuz, initrd, cmdline, args...)
	var console []string
	deadline := time.After(4 * time.Minute)
	var qmp *qmpConn
loop:
	for {
		select {
		case line, ok := <-vm.Lines:
			if !ok {
				break loop
			}
			console = append(console, line)
			if line == "PLUGNVME" {
				var err error
				if qmp, err = dialQMP(vm.QMP); err != nil {
					t.Fatalf("QMP: %v", err)
				}
				defer qmp.Close()
				vmtest.Must(t, qmp.do("blockdev-add", map[string]any{"driver": "raw", "node-name": "nvhot",
					"file": map[string]any{"driver": "file", "filename": img["nvhot"]}}))
				vmtest.Must(t, qmp.do("device_add", map[string]any{"driver": "nvme", "drive": "nvhot", "id": "nvhot", "serial": "HOTNVME", "bus": "rp1"}))
			}
		case <-deadline:
			t.Fatalf("the VM test did not finish within 4 minutes; %s", diagnose(console))
		}
	}
	got := map[int]map[string]string{}
	var files []string
	for _, line := range console {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "CLASS":
			kv := map[string]string{"name": f[1]}
			for _, p := range f[2:] {
				if k, v, ok := strings.Cut(p, "="); ok {
					kv[k] = v
				}
			}
			var size int
			fmt.Sscan(kv["size"], &size)
			got[size>>20] = kv
			t.Log(line)
		case len(f) == 3 && (f[0] == "F" || f[0] == "L"):
			files = append(files, line)
		case strings.HasPrefix(line, "CLASSIFY-ERROR"), strings.HasPrefix(line, "GUEST-ERROR"):
			t.Error(line)
		}
	}
	for name, d := range disks {
		kv := got[d.mib]
		if kv == nil {
			t.Errorf("%s (%s, %d MiB): not seen by the guest", name, d.what, d.mib)
			continue
		}
		if kv["class"] != d.class || kv["bus"] != d.bus {
			t.Errorf("%s (%s): %s class=%s bus=%s, want class=%s bus=%s (%s)", name, d.what, kv["name"], kv["class"], kv["bus"], d.class, d.bus, kv["reason"])
		}
	}
	if t.Failed() {
		t.Log(diagnose(console))
	}
	if capture != "" {
		for _, line := range files {
			f := strings.Fields(line)
			p := filepath.Join(capture, filepath.FromSlash(f[1]))
			vmtest.Must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			if f[0] == "L" {
				os.Remove(p)
				vmtest.Must(t, os.Symlink(f[2], p))
				continue
			}
			b, err := base64.StdEncoding.DecodeString(f[2])
			vmtest.Must(t, err)
			vmtest.Must(t, os.WriteFile(p, b, 0o644))
		}
		t.Logf("wrote %d sysfs entries into %s", len(files), capture)
	}
}
