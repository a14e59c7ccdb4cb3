package media

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUevent(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Uevent
		wantErr string
	}{
		{
			name: "usb stick disk add",
			raw: "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb\x00" +
				"ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb\x00" +
				"SUBSYSTEM=block\x00MAJOR=8\x00MINOR=16\x00DEVNAME=sdb\x00DEVTYPE=disk\x00DISKSEQ=9\x00SEQNUM=4242\x00",
			want: Uevent{Action: "add", DevPath: "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
				Subsystem: "block", DevType: "disk", DevName: "sdb", Seq: 4242},
		},
		{
			name: "loop change without trailing NUL",
			raw:  "change@/devices/virtual/block/loop3\x00ACTION=change\x00DEVPATH=/devices/virtual/block/loop3\x00SUBSYSTEM=block\x00DEVNAME=loop3\x00DEVTYPE=disk\x00SEQNUM=7",
			want: Uevent{Action: "change", DevPath: "/devices/virtual/block/loop3", Subsystem: "block", DevType: "disk", DevName: "loop3", Seq: 7},
		},
		{
			name: "usb interface with empty value",
			raw:  "add@/devices/pci0000:00/0000:00:14.0/usb1/1-5/1-5:1.0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-5/1-5:1.0\x00SUBSYSTEM=usb\x00DEVTYPE=usb_interface\x00INTERFACE=255/255/0\x00MODALIAS=\x00",
			want: Uevent{Action: "add", DevPath: "/devices/pci0000:00/0000:00:14.0/usb1/1-5/1-5:1.0", Subsystem: "usb", DevType: "usb_interface"},
		},
		{name: "empty", raw: "", wantErr: "empty"},
		{name: "udevd message", raw: "libudev\x00\xfe\xed\xca\xfe", wantErr: "not a kernel uevent"},
		{name: "no at", raw: "add/devices/x\x00ACTION=add\x00", wantErr: "not ACTION@DEVPATH"},
		{name: "relative devpath", raw: "add@devices/x\x00ACTION=add\x00DEVPATH=devices/x\x00", wantErr: "not ACTION@DEVPATH"},
		{name: "header disagrees", raw: "add@/devices/a\x00ACTION=remove\x00DEVPATH=/devices/a\x00", wantErr: "disagrees"},
		{name: "missing ACTION", raw: "add@/devices/a\x00DEVPATH=/devices/a\x00", wantErr: "disagrees"},
		{name: "field without =", raw: "add@/devices/a\x00ACTION=add\x00DEVPATH=/devices/a\x00junk\x00", wantErr: "not KEY=VALUE"},
		{name: "empty key", raw: "add@/devices/a\x00ACTION=add\x00DEVPATH=/devices/a\x00=x\x00", wantErr: "not KEY=VALUE"},
		{name: "empty field in the middle", raw: "add@/devices/a\x00ACTION=add\x00\x00DEVPATH=/devices/a\x00", wantErr: "empty field"},
		{name: "duplicate key", raw: "add@/devices/a\x00ACTION=add\x00DEVPATH=/devices/a\x00DEVNAME=sdb\x00DEVNAME=sda\x00", wantErr: "twice"},
		{name: "devpath climbs", raw: "add@/devices/../../etc\x00ACTION=add\x00DEVPATH=/devices/../../etc\x00", wantErr: "climbs"},
		{name: "devname climbs", raw: "add@/devices/a\x00ACTION=add\x00DEVPATH=/devices/a\x00DEVNAME=../etc/shadow\x00", wantErr: "climbs"},
		{name: "bad seqnum", raw: "add@/devices/a\x00ACTION=add\x00DEVPATH=/devices/a\x00SEQNUM=-1\x00", wantErr: "SEQNUM"},
		{name: "too large", raw: "add@/devices/a\x00" + strings.Repeat("A=b\x00", 3000), wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUevent([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Vars = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/virtual/block/loop0\x00ACTION=add\x00DEVPATH=/devices/virtual/block/loop0\x00SUBSYSTEM=block\x00DEVNAME=loop0\x00DEVTYPE=disk\x00SEQNUM=1\x00"))
	f.Add([]byte("libudev\x00xyz"))
	f.Add([]byte("remove@/devices/a\x00ACTION=remove\x00DEVPATH=/devices/a\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseUevent(b)
		if err != nil {
			return
		}
		// Whatever parses is self-consistent and stays inside sysfs and /dev.
		if ev.Action == "" || !strings.HasPrefix(ev.DevPath, "/") || strings.Contains(ev.DevPath, "/../") || strings.Contains(ev.DevName, "..") {
			t.Fatalf("accepted an unsafe uevent: %+v", ev)
		}
		if ev.Vars["ACTION"] != ev.Action || ev.Vars["DEVPATH"] != ev.DevPath {
			t.Fatalf("header and variables disagree: %+v", ev)
		}
	})
}

const mountinfoSample = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=4008680k,nr_inodes=1002170,mode=755
61 22 7:3 / /media/user/MY\040STICK rw,nosuid,nodev,relatime shared:33 - vfat /dev/sdb1 rw,fmask=0022,dmask=0022,codepage=437,iocharset=ascii
62 22 8:17 /sub /mnt/bind ro,relatime shared:34 master:2 - ext4 /dev/sdb1 rw
63 22 8:33 / /mnt/ro-sb rw,relatime - ext4 /dev/sdc1 ro
`

func TestParseMountinfo(t *testing.T) {
	got, err := ParseMountinfo([]byte(mountinfoSample))
	if err != nil {
		t.Fatal(err)
	}
	type short struct {
		Maj, Min uint32
		Point    string
		FS       string
		RO       bool
	}
	var gotS []short
	for _, m := range got {
		gotS = append(gotS, short{m.Major, m.Minor, m.MountPoint, m.FSType, m.ReadOnly()})
	}
	want := []short{
		{254, 0, "/", "ext4", false},
		{0, 5, "/dev", "devtmpfs", false},
		{7, 3, "/media/user/MY STICK", "vfat", false},
		{8, 17, "/mnt/bind", "ext4", true},
		{8, 33, "/mnt/ro-sb", "ext4", true},
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if got[3].Root != "/sub" || got[2].Source != "/dev/sdb1" {
		t.Errorf("root %q source %q", got[3].Root, got[2].Source)
	}

	for _, bad := range []string{
		"22 1 254:0 / / rw",                   // no separator
		"x 1 254:0 / / rw - ext4 /dev/vda rw", // bad id
		"22 1 254 / / rw - ext4 /dev/vda rw",  // bad device
		"22 1 a:b / / rw - ext4 /dev/vda rw",
		"22 1 254:0 / / rw -", // nothing after the separator
	} {
		if _, err := ParseMountinfo([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{`a\040b`: "a b", `a\134b`: `a\b`, `tail\04`: `tail\04`, `x\999`: `x\999`, `\011`: "\t"} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(mountinfoSample))
	f.Add([]byte("1 2 3:4 / / rw - x y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseMountinfo(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.FSType == "" || len(m.Options) == 0 {
				t.Fatalf("accepted a mount without type or options: %+v", m)
			}
		}
	})
}
