package media

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Class is the kind of device as the policy sees it.
type Class int

const (
	// ClassNone is not governed: internal disks, loop, dm, md, zram, NVMe
	// on PCI, keyboards.
	ClassNone Class = iota
	// ClassStorage is removable block storage: USB sticks and disks, SD
	// and MMC cards, FireWire disks, anything with removable=1.
	ClassStorage
	// ClassOptical is a CD/DVD/BD drive (sr*), wherever it sits.
	ClassOptical
	// ClassMTP is a USB interface speaking MTP or PTP (phones, cameras):
	// file transfer in user space, no block device.
	ClassMTP
)

func (c Class) String() string {
	switch c {
	case ClassStorage:
		return "storage"
	case ClassOptical:
		return "optical"
	case ClassMTP:
		return "mtp"
	default:
		return "none"
	}
}

// Device is what the classifier learnt about one block device or USB
// interface from sysfs.
type Device struct {
	Name    string // sdb, sdb1, sr0, mmcblk0p1; for USB interfaces 1-2:1.0
	DevName string // node below /dev (DEVNAME), usually Name
	SysPath string // below the sysfs root, e.g. /devices/…/block/sdb
	DevType string // disk, partition, usb_interface
	Disk    string // for a partition, its whole disk; else Name
	Class   Class
	Bus     string // usb, mmc, firewire, ata, nvme, virtual, other
	Reason  string // why this class, for evidence

	Major, Minor uint32
	SizeBytes    int64
	Removable    bool   // the removable attribute
	Vendor       string // USB idVendor, or MMC manfid
	Product      string // USB idProduct, or MMC name
	Serial       string
	VendorName   string // USB manufacturer string
	ProductName  string // USB product string
	USBInterface string // sysfs path of the USB interface it hangs off ("" if none)
	// SCSIDevice is the sysfs path (below the root) of the SCSI device
	// under a governed disk (…/host2/target2:0:0/2:0:0:0), "" when the
	// disk is not SCSI (MMC, NVMe).
	SCSIDevice  string
	SCSIGeneric string // sg node name of an optical drive, e.g. sg3 (see PassThrough)
}

// Classifier reads sysfs below Root ("/sys" in production, a captured tree
// in tests). It only reads.
type Classifier struct {
	Root string
}

var (
	usbBusRE      = regexp.MustCompile(`^usb[0-9]+$`)
	mmcHostRE     = regexp.MustCompile(`^mmc[0-9]+$`)
	firewireRE    = regexp.MustCompile(`^fw[0-9]+$`)
	ataRE         = regexp.MustCompile(`^ata[0-9]+$`)
	blockNameRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.!:+-]{0,63}$`)
	scsiAddrRE    = regexp.MustCompile(`^[0-9]+:[0-9]+:[0-9]+:[0-9]+$`)
	usbIfaceRE    = regexp.MustCompile(`^[0-9]+-[0-9.]+:[0-9]+\.[0-9]+$`)
	errNotDevices = errors.New("not below /devices")
)

// resolve turns a sysfs link below Root (relative to Root, like
// "class/block/sdb") into the device's path below Root ("/devices/…").
func (c Classifier) resolve(link string) (string, error) {
	target, err := os.Readlink(filepath.Join(c.Root, link))
	if err != nil {
		return "", err
	}
	p := path.Clean(path.Join("/", path.Dir(link), target))
	if !strings.HasPrefix(p, "/devices/") {
		return "", fmt.Errorf("%s -> %s: %w", link, target, errNotDevices)
	}
	return p, nil
}

func (c Classifier) read(sysPath, attr string) (string, error) {
	b, err := readAttr(filepath.Join(c.Root, sysPath, attr))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readOpt reads an attribute that may be absent.
func (c Classifier) readOpt(sysPath, attr string) string {
	s, _ := c.read(sysPath, attr)
	return s
}

// Block classifies the block device called name (as in /sys/class/block).
// A partition is classified like its disk.
func (c Classifier) Block(name string) (Device, error) {
	if !blockNameRE.MatchString(name) {
		return Device{}, fmt.Errorf("block device name %q is not valid", truncate(name))
	}
	sp, err := c.resolve("class/block/" + name)
	if err != nil {
		return Device{}, fmt.Errorf("classify %s: %w", name, err)
	}
	return c.BlockAt(sp)
}

// BlockAt classifies the block device at sysPath (a uevent's DEVPATH).
func (c Classifier) BlockAt(sysPath string) (Device, error) {
	return c.blockAt(sysPath, nil)
}

// BlockFromUevent classifies the block device a uevent names, taking the
// device number, type and node name from the uevent instead of sysfs:
// fewer reads on the path from uevent to read-only.
func (c Classifier) BlockFromUevent(ev Uevent) (Device, error) {
	return c.blockAt(ev.DevPath, &ev)
}

func (c Classifier) blockAt(sysPath string, ev *Uevent) (Device, error) {
	sysPath = path.Clean("/" + sysPath)
	if !strings.HasPrefix(sysPath, "/devices/") {
		return Device{}, fmt.Errorf("classify %s: %w", sysPath, errNotDevices)
	}
	d := Device{Name: path.Base(sysPath), SysPath: sysPath, DevType: "disk"}
	d.Disk, d.DevName = d.Name, d.Name
	var err error
	fromEvent := false
	if ev != nil && (ev.DevType == "disk" || ev.DevType == "partition") && ev.DevName != "" {
		d.Major, d.Minor, err = parseMajMin(ev.Vars["MAJOR"] + ":" + ev.Vars["MINOR"])
		fromEvent = err == nil
		if fromEvent {
			d.DevType, d.DevName = ev.DevType, ev.DevName
		}
	}
	if !fromEvent {
		if _, err := os.Stat(filepath.Join(c.Root, sysPath, "partition")); err == nil {
			d.DevType = "partition"
		}
		dev, err := c.read(sysPath, "dev")
		if err != nil {
			return Device{}, fmt.Errorf("classify %s: %w", d.Name, err)
		}
		if d.Major, d.Minor, err = parseMajMin(dev); err != nil {
			return Device{}, fmt.Errorf("classify %s: %w", d.Name, err)
		}
		for _, line := range strings.Split(c.readOpt(sysPath, "uevent"), "\n") {
			if v, ok := strings.CutPrefix(line, "DEVNAME="); ok && v != "" && !strings.Contains(v, "..") {
				d.DevName = v
			}
		}
	}
	diskPath := sysPath
	if d.DevType == "partition" {
		diskPath = path.Dir(sysPath)
		d.Disk = path.Base(diskPath)
	}
	if s, err := strconv.ParseInt(c.readOpt(sysPath, "size"), 10, 64); err == nil {
		d.SizeBytes = s * 512
	} else if _, serr := os.Stat(filepath.Join(c.Root, sysPath)); serr != nil {
		return Device{}, fmt.Errorf("classify %s: %w", d.Name, serr) // gone
	}
	d.Removable = c.readOpt(diskPath, "removable") == "1"

	d.Bus = busOf(diskPath)
	external := ""
	if d.Bus == "nvme" || d.Bus == "ata" || d.Bus == "other" {
		external = c.externalPCI(diskPath)
	}
	switch {
	case d.Bus == "virtual":
		d.Class, d.Reason = ClassNone, "virtual block device"
	case strings.HasPrefix(d.Disk, "sr"):
		d.Class, d.Reason = ClassOptical, "optical drive (sr)"
	case d.Bus == "usb" || d.Bus == "mmc" || d.Bus == "firewire":
		d.Class, d.Reason = ClassStorage, "on the "+d.Bus+" bus"
	case external != "":
		d.Class, d.Reason = ClassStorage, external
	case d.Removable:
		d.Class, d.Reason = ClassStorage, "removable attribute is 1"
	default:
		d.Class, d.Reason = ClassNone, "internal disk on the "+d.Bus+" bus"
	}
	if d.Bus == "usb" {
		if iface, ok := c.ancestorWith(diskPath, "bInterfaceClass"); ok {
			d.USBInterface = iface
		}
		if udev, ok := c.ancestorWith(diskPath, "idVendor"); ok {
			c.usbIDs(&d, udev)
		}
	}
	if d.Bus == "nvme" && d.Class == ClassStorage {
		// An external NVMe: its controller's serial and the PCI IDs make
		// allow-list entries as for USB (VENDOR:PRODUCT:SERIAL).
		if ctrl, ok := c.ancestorWith(diskPath, "serial"); ok {
			d.Serial = c.readOpt(ctrl, "serial")
			d.ProductName = c.readOpt(ctrl, "model")
		}
		if pci, ok := c.ancestorWith(diskPath, "vendor"); ok {
			d.Vendor = strings.TrimPrefix(c.readOpt(pci, "vendor"), "0x")
			d.Product = strings.TrimPrefix(c.readOpt(pci, "device"), "0x")
		}
	}
	if d.Bus == "mmc" {
		if card, ok := c.ancestorWith(diskPath, "manfid"); ok {
			d.Vendor = c.readOpt(card, "manfid")
			d.Product = c.readOpt(card, "name")
			d.Serial = c.readOpt(card, "serial")
		}
	}
	if d.Class != ClassNone {
		// The SCSI device above the disk: the control takes it offline to
		// cut a busy mount off, and closes its pass-through nodes
		// (PassThrough, read after BLKROSET: not on the uevent path).
		if sdev := path.Dir(path.Dir(diskPath)); scsiAddrRE.MatchString(path.Base(sdev)) {
			d.SCSIDevice = sdev
		}
	}
	if d.Class == ClassOptical && d.SCSIDevice != "" {
		d.SCSIGeneric, _ = c.PassThrough(d.SCSIDevice)
	}
	return d, nil
}

// PassThrough names the SCSI pass-through nodes of the SCSI device at
// scsiDev (below the root), relative to /dev: its sg node ("sg3") and its
// bsg node ("bsg/2:0:0:0"), "" for either that is absent. SG_IO through
// them (or through the disk's own node) needs only a write open to send
// WRITE(10) past BLKROSET.
func (c Classifier) PassThrough(scsiDev string) (sg, bsg string) {
	if scsiDev == "" {
		return "", ""
	}
	if ents, err := os.ReadDir(filepath.Join(c.Root, scsiDev, "scsi_generic")); err == nil && len(ents) > 0 && blockNameRE.MatchString(ents[0].Name()) {
		sg = ents[0].Name()
	}
	if ents, err := os.ReadDir(filepath.Join(c.Root, scsiDev, "bsg")); err == nil && len(ents) > 0 && blockNameRE.MatchString(ents[0].Name()) {
		bsg = "bsg/" + ents[0].Name()
	}
	return sg, bsg
}

func (c Classifier) usbIDs(d *Device, usbDev string) {
	d.Vendor = strings.ToLower(c.readOpt(usbDev, "idVendor"))
	d.Product = strings.ToLower(c.readOpt(usbDev, "idProduct"))
	d.Serial = c.readOpt(usbDev, "serial")
	d.VendorName = c.readOpt(usbDev, "manufacturer")
	d.ProductName = c.readOpt(usbDev, "product")
}

// USBInterface classifies the USB interface at sysPath (a uevent's DEVPATH
// with DEVTYPE=usb_interface): mass storage (class 08), still image (06,
// PTP and most MTP) or a vendor-specific interface called "MTP".
func (c Classifier) USBInterface(sysPath string) (Device, error) {
	sysPath = path.Clean("/" + sysPath)
	if !strings.HasPrefix(sysPath, "/devices/") {
		return Device{}, fmt.Errorf("classify %s: %w", sysPath, errNotDevices)
	}
	d := Device{Name: path.Base(sysPath), SysPath: sysPath, DevType: "usb_interface", Bus: "usb", USBInterface: sysPath}
	cls, err := c.read(sysPath, "bInterfaceClass")
	if err != nil {
		return Device{}, fmt.Errorf("classify USB interface %s: %w", d.Name, err)
	}
	c.usbIDs(&d, path.Dir(sysPath))
	name := c.readOpt(sysPath, "interface")
	switch {
	case cls == "06":
		d.Class, d.Reason = ClassMTP, "USB still-image interface (class 06: PTP/MTP)"
	case strings.EqualFold(name, "MTP") || strings.HasPrefix(strings.ToUpper(name), "MTP "):
		d.Class, d.Reason = ClassMTP, "USB interface named "+strconv.Quote(name)
	case cls == "08":
		d.Class, d.Reason = ClassStorage, "USB mass-storage interface (class 08)"
	default:
		d.Class, d.Reason = ClassNone, "USB interface class "+cls
	}
	return d, nil
}

// USBInterfaces classifies every USB interface listed in bus/usb/devices.
func (c Classifier) USBInterfaces() ([]Device, error) {
	ents, err := os.ReadDir(filepath.Join(c.Root, "bus/usb/devices"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no USB at all
	}
	if err != nil {
		return nil, fmt.Errorf("list USB devices: %w", err)
	}
	var out []Device
	var errs []error
	for _, e := range ents {
		if !usbIfaceRE.MatchString(e.Name()) {
			continue
		}
		sp, err := c.resolve("bus/usb/devices/" + e.Name())
		if err == nil {
			var d Device
			if d, err = c.USBInterface(sp); err == nil {
				out = append(out, d)
				continue
			}
		}
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Blocks classifies every block device in class/block. Devices that
// vanish while listed are skipped; other failures are joined.
func (c Classifier) Blocks() ([]Device, error) {
	ents, err := os.ReadDir(filepath.Join(c.Root, "class/block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Device
	var errs []error
	for _, e := range ents {
		d, err := c.Block(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

// ancestorWith walks from sysPath up to /devices and returns the first
// directory holding attr.
func (c Classifier) ancestorWith(sysPath, attr string) (string, bool) {
	for p := sysPath; p != "/devices" && p != "/" && p != "."; p = path.Dir(p) {
		if _, err := os.Stat(filepath.Join(c.Root, p, attr)); err == nil {
			return p, true
		}
	}
	return "", false
}

var pciAddrRE = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// externalPCI says why a disk on PCIe (NVMe, or an AHCI/SCSI controller
// on a card) is removable media, or "" if it is not: a PCI device on its
// path sits behind an external-facing port (Thunderbolt, USB4: the kernel
// marks it removable=removable) or in a hot-plug PCIe slot (a slot of
// bus/pci/slots with hot-plug controls: power, adapter — slots the
// firmware only names, without them, are not hot-plug). The control
// never governs the disk holding the system (see systemDisks), whatever
// this says.
func (c Classifier) externalPCI(diskPath string) string {
	var slots map[string]string // address → slot name, read once
	prefix := ""
	for _, part := range strings.Split(strings.TrimPrefix(diskPath, "/"), "/") {
		prefix += "/" + part
		if !pciAddrRE.MatchString(part) {
			continue
		}
		if c.readOpt(prefix, "removable") == "removable" {
			return "behind an external PCIe port (Thunderbolt/USB4): PCI " + part + " is removable"
		}
		if slots == nil {
			slots = c.hotplugSlots()
		}
		if name, ok := slots[part[:len(part)-2]]; ok {
			return "in hot-plug PCIe slot " + name + " (PCI " + part + ")"
		}
	}
	return ""
}

// hotplugSlots maps the address of each hot-plug capable PCI slot
// ("0000:01:00") to its name.
func (c Classifier) hotplugSlots() map[string]string {
	out := map[string]string{}
	ents, err := os.ReadDir(filepath.Join(c.Root, "bus/pci/slots"))
	if err != nil {
		return out
	}
	for _, e := range ents {
		dir := "bus/pci/slots/" + e.Name()
		hot := false
		for _, ctl := range []string{"power", "adapter"} {
			if _, err := os.Stat(filepath.Join(c.Root, dir, ctl)); err == nil {
				hot = true
			}
		}
		if a := c.readOpt(dir, "address"); hot && a != "" {
			out[a] = e.Name()
		}
	}
	return out
}

// busOf names the bus a block device sits on, from its sysfs path: the
// path, not the removable attribute, is what tells a USB disk (qemu's
// usb-storage and USB-SATA enclosures say removable=0).
func busOf(sysPath string) string {
	if strings.HasPrefix(sysPath, "/devices/virtual/") {
		return "virtual"
	}
	bus := "other"
	for _, part := range strings.Split(sysPath, "/") {
		switch {
		case usbBusRE.MatchString(part):
			return "usb"
		case part == "mmc_host" || mmcHostRE.MatchString(part):
			bus = "mmc"
		case part == "firewire" || firewireRE.MatchString(part):
			bus = "firewire"
		case part == "nvme" && bus == "other":
			bus = "nvme"
		case ataRE.MatchString(part) && bus == "other":
			bus = "ata"
		}
	}
	return bus
}

func parseMajMin(s string) (uint32, uint32, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("device number %q is not MAJOR:MINOR", truncate(s))
	}
	return uint32(ma), uint32(mi), nil
}
