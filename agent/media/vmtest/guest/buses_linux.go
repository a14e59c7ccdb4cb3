package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/agent/media"
)

// runBuses is issue #16's item 4 on a real kernel: disks on every bus
// qemu can present (NVMe on the root complex and hot-plugged into a PCIe
// root port, SATA on the q35 AHCI, virtio-scsi marked removable, an SD
// card on sdhci-pci, a USB stick) are classified by the real classifier
// reading the real sysfs ("CLASS …"). With mamori.capture=1 the sysfs
// the classifier reads is printed ("F"/"L" lines) for the host to keep in
// testdata, so that unit tests classify the same trees without a VM.
func runBuses() error {
	fmt.Println("GUEST-READY")
	fmt.Println("PLUGNVME")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if hasSerialNVMe("HOTNVME") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the hot-plugged NVMe did not appear within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"sd", "mmcblk"} { // the slower buses
		for !hasPrefix(want) {
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s* disk within 60s", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // the rest of the SCSI and MMC scans
	c := media.Classifier{Root: "/sys"}
	ents, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return err
	}
	capture, _ := os.ReadFile("/proc/cmdline")
	dump := strings.Contains(string(capture), "mamori.capture=1")
	seen := map[string]bool{}
	for _, e := range ents {
		d, err := c.Block(e.Name())
		if err != nil {
			fmt.Println("CLASSIFY-ERROR", e.Name(), err)
			continue
		}
		if d.DevType != "disk" || strings.HasPrefix(d.Name, "loop") || strings.HasPrefix(d.Name, "ram") {
			continue
		}
		fmt.Printf("CLASS %s size=%d class=%s bus=%s serial=%s removable=%v reason=%q\n", d.Name, d.SizeBytes, d.Class, d.Bus, d.Serial, d.Removable, d.Reason)
		if dump {
			dumpTree(e.Name(), seen)
		}
	}
	if dump {
		slots, _ := filepath.Glob("/sys/bus/pci/slots/*/*")
		for _, s := range slots {
			if captured[filepath.Base(s)] {
				dumpFile(strings.TrimPrefix(s, "/sys"), seen)
			}
		}
	}
	return nil
}

func hasSerialNVMe(serial string) bool {
	ms, _ := filepath.Glob("/sys/class/nvme/*/serial")
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil && strings.TrimSpace(string(b)) == serial {
			// and its namespace is there
			ns, _ := filepath.Glob(filepath.Dir(m) + "/nvme*n1")
			return len(ns) > 0
		}
	}
	return false
}

func hasPrefix(p string) bool {
	ents, _ := os.ReadDir("/sys/class/block")
	return slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), p) })
}

// captured are the attributes the classifier reads (and a few that help a
// reader of the tree); nothing else of sysfs is printed.
var captured = map[string]bool{"dev": true, "size": true, "removable": true, "partition": true, "uevent": true,
	"idVendor": true, "idProduct": true, "serial": true, "manufacturer": true, "product": true,
	"bInterfaceClass": true, "interface": true, "manfid": true, "name": true, "type": true,
	"model": true, "vendor": true, "class": true, "vendor_id": true, "address": true,
	"power": true, "adapter": true, "device": true}

// dumpTree prints the block device's class link and every directory from
// /sys/devices down to it, with the captured attributes.
func dumpTree(name string, seen map[string]bool) {
	link := "/class/block/" + name
	target, err := os.Readlink("/sys" + link)
	if err != nil {
		return
	}
	fmt.Printf("L %s %s\n", link, target)
	dev := path.Clean(path.Join("/class/block", target))
	for p := dev; p != "/devices" && p != "/"; p = path.Dir(p) {
		ents, err := os.ReadDir("/sys" + p)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if captured[e.Name()] && e.Type().IsRegular() {
				dumpFile(p+"/"+e.Name(), seen)
			}
			if e.Name() == "scsi_generic" || e.Name() == "bsg" {
				if sub, err := os.ReadDir("/sys" + p + "/" + e.Name()); err == nil {
					for _, s := range sub {
						dumpFile(p+"/"+e.Name()+"/"+s.Name()+"/dev", seen)
					}
				}
			}
		}
	}
}

func dumpFile(p string, seen map[string]bool) {
	if seen[p] {
		return
	}
	seen[p] = true
	b, err := os.ReadFile("/sys" + p)
	if err != nil || len(b) > 4096 {
		return
	}
	fmt.Printf("F %s %s\n", p, base64.StdEncoding.EncodeToString(b))
}
