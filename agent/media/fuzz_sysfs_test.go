package media

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// serverMaxValue is the server's limit on an event attribute value
// (server/api MaxLongString): a longer one makes it refuse the whole
// report, and the agent would resend that batch forever.
const serverMaxValue = 4096

// FuzzSysfsAttributes feeds arbitrary content into the sysfs attributes of
// a USB stick (what a hostile device or a strange kernel could put there)
// and classifies it: no panic, and whatever the classification, the event
// it makes is one the server accepts (valid UTF-8, bounded values).
func FuzzSysfsAttributes(f *testing.F) {
	f.Add("8:16", "60063744", "1", "0781", "5581", "4C530001231120115142", "SanDisk", "Cruzer Blade")
	f.Add("8:16", "-1", "2", "", "", "", "", "")
	f.Add("x", "99999999999999999999999", "1\n0", "0781\n", "zzzz", "\xff\xfe", "\xc3", strings.Repeat("m", 5000))
	f.Add("8:16", "1000", "1", "0781", "5581", "\xff\xfe", "\xc3", strings.Repeat("m", 5000))
	f.Add("8:16", "1000", "1", "0781", "5581", "s", strings.Repeat("v", 4000), strings.Repeat("p", 4000))
	f.Add("4294967296:0", "0", "", "07 81", "55:81", "a,b c", strings.Repeat("é", 3000), strings.Repeat("\x00", 100))
	f.Fuzz(func(t *testing.T, dev, size, removable, vendor, product, serial, manufacturer, productName string) {
		root := t.TempDir()
		usb := "devices/pci0000:00/0000:00:14.0/usb1/1-2"
		disk := usb + "/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
		write := func(dir, name, v string) {
			if len(v) > 4096 { // a sysfs attribute is at most a page
				v = v[:4096]
			}
			must(t, os.WriteFile(filepath.Join(root, dir, name), []byte(v), 0o644))
		}
		must(t, os.MkdirAll(filepath.Join(root, disk), 0o755))
		must(t, os.MkdirAll(filepath.Join(root, "class/block"), 0o755))
		must(t, os.Symlink("../../"+disk, filepath.Join(root, "class/block/sdb")))
		write(disk, "dev", dev)
		write(disk, "size", size)
		write(disk, "removable", removable)
		write(usb, "idVendor", vendor)
		write(usb, "idProduct", product)
		write(usb, "serial", serial)
		write(usb, "manufacturer", manufacturer)
		write(usb, "product", productName)
		d, err := Classifier{Root: root}.Block("sdb")
		if err != nil {
			return
		}
		for _, enforce := range []bool{false, true} {
			for k, v := range eventAttrs(d, ActionBlock, "test", enforce) {
				if !utf8.ValidString(v) {
					t.Fatalf("event attribute %s is not UTF-8: %q", k, v)
				}
				if len(v) > serverMaxValue {
					t.Fatalf("event attribute %s is %d bytes; the server takes %d", k, len(v), serverMaxValue)
				}
			}
		}
	})
}

// FuzzParseSettings: the media settings of a policy come from the server;
// any values are refused or give actions the control knows and a bounded
// allow-list of well-formed entries.
func FuzzParseSettings(f *testing.F) {
	f.Add("block", "allow", "allow", "0781:5581:4C530001231120115142, 46F4:0001:*")
	f.Add("read-only", "", "block", "")
	f.Add("readonly", "x", "read-only", "0781:5581:")
	f.Add("", "", "", strings.Repeat("0781:5581:*,", MaxAllowEntries+1))
	f.Add("allow", "block", "allow", "781:5581:ü\n0781:5581:a:b:c")
	f.Fuzz(func(t *testing.T, storage, optical, mtp, allow string) {
		s, err := ParseSettings(map[string]string{"storage": storage, "optical": optical, "mtp": mtp, "allow": allow})
		if err != nil {
			return
		}
		for _, a := range []Action{s.Storage, s.Optical, s.MTP} {
			if a != ActionReadOnly && a != ActionBlock && a != ActionAllow {
				t.Fatalf("accepted action %q", a)
			}
		}
		if s.MTP == ActionReadOnly {
			t.Fatal("accepted mtp read-only, which cannot be enforced")
		}
		if len(s.Allow) > MaxAllowEntries {
			t.Fatalf("%d allow entries", len(s.Allow))
		}
		for _, e := range s.Allow {
			if len(e.Vendor) != 4 || len(e.Product) != 4 || e.Serial == "" || !utf8.ValidString(e.Serial) {
				t.Fatalf("accepted allow entry %+v", e)
			}
		}
	})
}
