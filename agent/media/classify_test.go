package media

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mixedTree = "../../testdata/sysfs/mixed"

func TestClassifyBlock(t *testing.T) {
	c := Classifier{Root: mixedTree}
	type want struct {
		Class     Class
		Bus       string
		DevType   string
		Disk      string
		Removable bool
		Vendor    string
		Product   string
		Serial    string
		Iface     string
	}
	tests := []struct {
		name string
		dev  string
		want want
	}{
		{"usb stick removable=1", "sdb", want{ClassStorage, "usb", "disk", "sdb", true, "0781", "5581", "4C530001231120115142", "1-2:1.0"}},
		{"usb stick partition", "sdb1", want{ClassStorage, "usb", "partition", "sdb", true, "0781", "5581", "4C530001231120115142", "1-2:1.0"}},
		{"qemu usb-storage removable=0", "sdc", want{ClassStorage, "usb", "disk", "sdc", false, "46f4", "0001", "1-0000:01:00.0-1", "3-1:1.0"}},
		{"usb-sata disk removable=0", "sdd", want{ClassStorage, "usb", "disk", "sdd", false, "152d", "0578", "0000000000CA", "2-1:1.0"}},
		{"usb sd card reader", "sde", want{ClassStorage, "usb", "disk", "sde", true, "0bda", "0129", "20100201396000000", "1-4:1.0"}},
		{"usb cd drive", "sr0", want{ClassOptical, "usb", "disk", "sr0", true, "0e8d", "1887", "R8RN6GDCD00NL3", "1-3:1.0"}},
		{"internal sata dvd", "sr1", want{ClassOptical, "ata", "disk", "sr1", true, "", "", "", ""}},
		{"sd card on mmc", "mmcblk0", want{ClassStorage, "mmc", "disk", "mmcblk0", false, "0x000003", "SU08G", "0x1a2b3c4d", ""}},
		{"sd card partition", "mmcblk0p1", want{ClassStorage, "mmc", "partition", "mmcblk0", false, "0x000003", "SU08G", "0x1a2b3c4d", ""}},
		{"internal sata", "sda", want{ClassNone, "ata", "disk", "sda", false, "", "", "", ""}},
		{"internal sata partition", "sda1", want{ClassNone, "ata", "partition", "sda", false, "", "", "", ""}},
		{"nvme", "nvme0n1", want{ClassNone, "nvme", "disk", "nvme0n1", false, "", "", "", ""}},
		{"nvme partition", "nvme0n1p1", want{ClassNone, "nvme", "partition", "nvme0n1", false, "", "", "", ""}},
		{"loop", "loop0", want{ClassNone, "virtual", "disk", "loop0", false, "", "", "", ""}},
		{"zram", "zram0", want{ClassNone, "virtual", "disk", "zram0", false, "", "", "", ""}},
		{"dm", "dm-0", want{ClassNone, "virtual", "disk", "dm-0", false, "", "", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := c.Block(tt.dev)
			if err != nil {
				t.Fatal(err)
			}
			got := want{d.Class, d.Bus, d.DevType, d.Disk, d.Removable, d.Vendor, d.Product, d.Serial, filepath.Base(d.USBInterface)}
			if d.USBInterface == "" {
				got.Iface = ""
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if d.DevName != tt.dev || d.Major == 0 && d.Name != "loop0" || d.Reason == "" {
				t.Errorf("devname %q major %d reason %q", d.DevName, d.Major, d.Reason)
			}
		})
	}
	if d, _ := c.Block("sr0"); d.SCSIGeneric != "sg3" || !strings.HasSuffix(d.SCSIDevice, "/host7/target7:0:0/7:0:0:0") {
		t.Errorf("sr0 scsi generic %q device %q, want sg3 under 7:0:0:0", d.SCSIGeneric, d.SCSIDevice)
	}
	// A USB stick's disk has pass-through nodes too (SG_IO bypasses
	// BLKROSET); its partition names the same ones.
	for _, n := range []string{"sdb", "sdb1"} {
		d, _ := c.Block(n)
		if sg, bsg := c.PassThrough(d.SCSIDevice); sg != "sg1" || bsg != "bsg/6:0:0:0" || !strings.HasSuffix(d.SCSIDevice, "/6:0:0:0") {
			t.Errorf("%s: scsi generic %q bsg %q device %q, want sg1, bsg/6:0:0:0 under 6:0:0:0", n, sg, bsg, d.SCSIDevice)
		}
	}
	// Not SCSI: no pass-through nodes to close.
	if d, _ := c.Block("mmcblk0"); d.SCSIDevice != "" {
		t.Errorf("mmcblk0: scsi device %q", d.SCSIDevice)
	}
	if d, _ := c.Block("sdb"); d.SizeBytes != 60063744*512 {
		t.Errorf("sdb size %d", d.SizeBytes)
	}
	for _, bad := range []string{"../etc", "nosuch", ""} {
		if _, err := c.Block(bad); err == nil {
			t.Errorf("Block(%q) succeeded", bad)
		}
	}
}

// The removable attribute alone makes a disk removable storage when no
// bus says so (a removable SCSI disk on an internal controller).
func TestClassifyRemovableAttribute(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sdz")
	must(t, os.MkdirAll(dir, 0o755))
	for f, v := range map[string]string{"dev": "65:144", "size": "1000", "removable": "1"} {
		must(t, os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(root, "class/block"), 0o755))
	must(t, os.Symlink("../../devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sdz", filepath.Join(root, "class/block/sdz")))
	d, err := Classifier{Root: root}.Block("sdz")
	if err != nil {
		t.Fatal(err)
	}
	if d.Class != ClassStorage || d.Reason != "removable attribute is 1" {
		t.Errorf("class %v reason %q", d.Class, d.Reason)
	}
	must(t, os.WriteFile(filepath.Join(dir, "removable"), []byte("0\n"), 0o644))
	if d, _ := (Classifier{Root: root}).Block("sdz"); d.Class != ClassNone {
		t.Errorf("removable=0 on ata: class %v", d.Class)
	}
}

func TestClassifyUSBInterfaces(t *testing.T) {
	got, err := Classifier{Root: mixedTree}.USBInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	classes := map[string]string{}
	for _, d := range got {
		classes[d.Name] = d.Class.String() + " " + d.Vendor + ":" + d.Product
	}
	want := map[string]string{
		"1-2:1.0": "storage 0781:5581", "3-1:1.0": "storage 46f4:0001", "2-1:1.0": "storage 152d:0578",
		"1-4:1.0": "storage 0bda:0129", "1-3:1.0": "storage 0e8d:1887",
		"1-5:1.0": "mtp 18d1:4ee1", "1-6:1.0": "mtp 04a9:3218", "1-7:1.0": "none 046d:c31c",
	}
	if diff := cmp.Diff(want, classes); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestParseSettings(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		want    Settings
		wantErr string
	}{
		{"empty means defaults", nil, DefaultSettings(), ""},
		{"all set", map[string]string{"storage": "block", "optical": "allow", "mtp": "allow", "allow": "0781:5581:4C530001231120115142, 46F4:0001:*\n0781:5581:4C530001231120115142"},
			Settings{Storage: ActionBlock, Optical: ActionAllow, MTP: ActionAllow, Allow: []AllowEntry{{"0781", "5581", "4C530001231120115142"}, {"46f4", "0001", "*"}}}, ""},
		{"serial with colons", map[string]string{"allow": "46f4:0001:1-0000:01:00.0-1"}, Settings{Storage: ActionReadOnly, Optical: ActionReadOnly, MTP: ActionBlock, Allow: []AllowEntry{{"46f4", "0001", "1-0000:01:00.0-1"}}}, ""},
		{"unknown key", map[string]string{"storgae": "block"}, DefaultSettings(), `"storgae" is unknown`},
		{"unknown mode", map[string]string{"storage": "readonly"}, DefaultSettings(), "use read-only, block or allow"},
		{"mtp read-only", map[string]string{"mtp": "read-only"}, DefaultSettings(), "cannot be enforced"},
		{"bad vendor", map[string]string{"allow": "781:5581:X"}, DefaultSettings(), "entry 1"},
		{"missing serial", map[string]string{"allow": "0781:5581"}, DefaultSettings(), "VENDOR:PRODUCT:SERIAL"},
		{"empty serial", map[string]string{"allow": "0781:5581:"}, DefaultSettings(), "entry 1"},
		{"non-ascii serial", map[string]string{"allow": "0781:5581:ü"}, DefaultSettings(), "entry 1"},
		{"too many", map[string]string{"allow": strings.Repeat("0781:5581:*,", MaxAllowEntries+1)}, DefaultSettings(), "at most"},
		{"one bad value keeps defaults for all", map[string]string{"storage": "allow", "optical": "x"}, DefaultSettings(), "optical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSettings(tt.in)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	stick := Device{Class: ClassStorage, Vendor: "0781", Product: "5581", Serial: "AAA"}
	noSerial := Device{Class: ClassStorage, Vendor: "0781", Product: "5581"}
	cd := Device{Class: ClassOptical, Vendor: "0e8d", Product: "1887", Serial: "S"}
	phone := Device{Class: ClassMTP, Vendor: "18d1", Product: "4ee1", Serial: "P"}
	disk := Device{Class: ClassNone}
	allowAAA := Settings{Storage: ActionReadOnly, Optical: ActionBlock, MTP: ActionBlock, Allow: []AllowEntry{{"0781", "5581", "AAA"}, {"18d1", "4ee1", "*"}}}
	tests := []struct {
		name     string
		s        Settings
		d        Device
		want     Action
		wantRule string
	}{
		{"default stick", DefaultSettings(), stick, ActionReadOnly, "storage=read-only"},
		{"default cd", DefaultSettings(), cd, ActionReadOnly, "optical=read-only"},
		{"default phone", DefaultSettings(), phone, ActionBlock, "mtp=block"},
		{"internal disk", DefaultSettings(), disk, ActionNone, ""},
		{"allow-listed stick", allowAAA, stick, ActionAllow, "allow=0781:5581:AAA"},
		{"same model other serial", allowAAA, Device{Class: ClassStorage, Vendor: "0781", Product: "5581", Serial: "BBB"}, ActionReadOnly, "storage=read-only"},
		{"no serial never matches a serial entry", allowAAA, noSerial, ActionReadOnly, "storage=read-only"},
		{"wildcard serial", allowAAA, phone, ActionAllow, "allow=18d1:4ee1:*"},
		{"vendor case", allowAAA, Device{Class: ClassStorage, Vendor: "0781", Product: "5581", Serial: "AAA"}, ActionAllow, "allow=0781:5581:AAA"},
		{"optical blocked", allowAAA, cd, ActionBlock, "optical=block"},
		{"zero settings fail closed", Settings{}, phone, ActionBlock, "mtp=block"},
		{"zero settings stick", Settings{}, stick, ActionReadOnly, "storage=read-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rule := Decide(tt.s, tt.d)
			if a != tt.want || rule != tt.wantRule {
				t.Errorf("Decide = %q %q, want %q %q", a, rule, tt.want, tt.wantRule)
			}
		})
	}
}

func TestShippedUdevRuleMatchesAgent(t *testing.T) {
	b, err := os.ReadFile("../../installer/udev/60-mamori-media.rules")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != UdevRuleSHA256 {
		t.Fatalf("installer/udev/60-mamori-media.rules has sha256 %s; set UdevRuleSHA256 in udev.go to it", got)
	}
	// Every line is a comment, blank, or KEY op "VALUE" pairs.
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, pair := range strings.Split(line, ", ") {
			if !udevPairRE.MatchString(pair) {
				t.Errorf("line %d: %q is not KEY op \"VALUE\"", i+1, pair)
			}
		}
	}
}

func TestCheckUdevRule(t *testing.T) {
	shipped, err := os.ReadFile("../../installer/udev/60-mamori-media.rules")
	must(t, err)
	dir := t.TempDir()
	rule := filepath.Join(dir, "lib", "60-mamori-media.rules")
	etc := filepath.Join(dir, "etc")
	must(t, os.MkdirAll(filepath.Dir(rule), 0o755))
	must(t, os.MkdirAll(etc, 0o755))
	check := func(want string) {
		t.Helper()
		if got := CheckUdevRule(rule, []string{etc}); got.State != want || got.Detail == "" {
			t.Errorf("state %q (%s), want %q", got.State, got.Detail, want)
		}
	}
	check(UdevRuleMissing)
	must(t, os.WriteFile(rule, shipped, 0o644))
	check(UdevRuleOK)
	must(t, os.WriteFile(rule, append(shipped, '#'), 0o644))
	check(UdevRuleModified)
	must(t, os.WriteFile(rule, shipped, 0o644))
	must(t, os.Symlink("/dev/null", filepath.Join(etc, "60-mamori-media.rules")))
	check(UdevRuleMasked)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var udevPairRE = regexp.MustCompile(`^[A-Z]+(\{[A-Za-z_]+\})?(==|!=|=|\+=|:=)"[^"]*"$`)

func TestListOnCapturedTree(t *testing.T) {
	devs, err := List(Options{SysRoot: mixedTree, DevRoot: t.TempDir()}, DefaultSettings())
	must(t, err)
	var b strings.Builder
	must(t, WriteList(&b, devs))
	out := b.String()
	for _, want := range []string{
		"sdb        storage  usb",
		"read-only (storage=read-only)",
		"1-5:1.0    mtp",
		"block (mtp=block)",
		"sda        none     ata",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
}

// TestClassifyVMBuses classifies the sysfs captured from a qemu guest with
// a disk on every bus qemu presents (agent/media/vmtest
// TestVMBusesClassified with MAMORI_VM_CAPTURE), and two variants a VM
// cannot present: an NVMe behind an external-facing (Thunderbolt/USB4)
// port, and a slot the firmware names without hot-plug controls.
func TestClassifyVMBuses(t *testing.T) {
	const tree = "../../testdata/sysfs/vm-buses"
	for _, tt := range []struct {
		dev, class, bus, reason string
	}{
		{"nvme0n1", "none", "nvme", "internal disk on the nvme bus"},
		{"nvme1n1", "storage", "nvme", "in hot-plug PCIe slot 0 (PCI 0000:01:00.0)"},
		{"sda", "none", "ata", "internal disk on the ata bus"},
		{"sdb", "storage", "other", "removable attribute is 1"}, // virtio-scsi, removable=on
		{"sdc", "storage", "usb", "on the usb bus"},
		{"mmcblk0", "storage", "mmc", "on the mmc bus"}, // SD card on sdhci-pci
	} {
		d, err := Classifier{Root: tree}.Block(tt.dev)
		if err != nil {
			t.Fatal(err)
		}
		if d.Class.String() != tt.class || d.Bus != tt.bus || d.Reason != tt.reason {
			t.Errorf("%s: class %s bus %s reason %q, want %s %s %q", tt.dev, d.Class, d.Bus, d.Reason, tt.class, tt.bus, tt.reason)
		}
		if tt.dev == "nvme1n1" && (d.Serial != "HOTNVME" || d.Vendor != "1b36" || d.Product == "") {
			t.Errorf("hot-plugged NVMe ids %q:%q:%q, want 1b36:…:HOTNVME (allow-list entries need them)", d.Vendor, d.Product, d.Serial)
		}
	}

	// Variants on a copy of the tree.
	variant := func(t *testing.T, edit func(root string)) string {
		root := t.TempDir()
		if err := os.CopyFS(root, os.DirFS(tree)); err != nil {
			t.Fatal(err)
		}
		edit(root)
		return root
	}
	t.Run("thunderbolt", func(t *testing.T) {
		root := variant(t, func(root string) {
			must(t, os.WriteFile(filepath.Join(root, "devices/pci0000:00/0000:00:03.0/removable"), []byte("removable\n"), 0o644))
		})
		d, err := Classifier{Root: root}.Block("nvme0n1")
		must(t, err)
		if d.Class != ClassStorage || !strings.Contains(d.Reason, "Thunderbolt") {
			t.Errorf("NVMe behind an external-facing port: %s %q", d.Class, d.Reason)
		}
	})
	t.Run("slot without hot-plug controls", func(t *testing.T) {
		root := variant(t, func(root string) {
			for _, f := range []string{"power", "adapter"} {
				must(t, os.Remove(filepath.Join(root, "bus/pci/slots/0", f)))
			}
		})
		d, err := Classifier{Root: root}.Block("nvme1n1")
		must(t, err)
		if d.Class != ClassNone {
			t.Errorf("NVMe in a slot the firmware only names: %s %q, want none", d.Class, d.Reason)
		}
	})
}
