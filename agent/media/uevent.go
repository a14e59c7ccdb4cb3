package media

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Uevent is one kernel uevent as NETLINK_KOBJECT_UEVENT delivers it: a
// header "ACTION@DEVPATH" followed by KEY=VALUE pairs, all separated by NUL
// bytes.
type Uevent struct {
	Action    string // add, remove, change, bind, unbind, move, online, offline
	DevPath   string // sysfs path below /sys, e.g. /devices/…/block/sdb
	Subsystem string // block, usb, scsi_generic, …
	DevType   string // disk, partition, usb_device, usb_interface, …
	DevName   string // node name below /dev, e.g. sdb1
	Seq       uint64
	Vars      map[string]string // every KEY=VALUE pair, the above included
}

// MaxUeventSize bounds what ParseUevent accepts; the kernel's own limit
// (UEVENT_BUFFER_SIZE) is 2048 bytes.
const MaxUeventSize = 8192

// errNotKernel marks a message from udevd ("libudev" header) rather than
// the kernel; the listener only trusts the kernel.
var errNotKernel = errors.New("not a kernel uevent")

// ParseUevent parses one raw kernel uevent. It refuses messages from udevd
// (they start with "libudev\x00"), headers that do not match the ACTION and
// DEVPATH variables, and malformed pairs. Unknown keys are kept in Vars.
func ParseUevent(b []byte) (Uevent, error) {
	if len(b) == 0 {
		return Uevent{}, errors.New("uevent: empty message")
	}
	if len(b) > MaxUeventSize {
		return Uevent{}, fmt.Errorf("uevent: %d bytes, at most %d", len(b), MaxUeventSize)
	}
	if bytes.HasPrefix(b, []byte("libudev\x00")) {
		return Uevent{}, errNotKernel
	}
	fields := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	header := string(fields[0])
	action, devpath, ok := strings.Cut(header, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Uevent{}, fmt.Errorf("uevent: header %q is not ACTION@DEVPATH", truncate(header))
	}
	ev := Uevent{Vars: make(map[string]string, len(fields)-1)}
	for _, f := range fields[1:] {
		if len(f) == 0 {
			return Uevent{}, errors.New("uevent: empty field")
		}
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || k == "" {
			return Uevent{}, fmt.Errorf("uevent: field %q is not KEY=VALUE", truncate(string(f)))
		}
		if _, dup := ev.Vars[k]; dup {
			return Uevent{}, fmt.Errorf("uevent: key %s given twice", k)
		}
		ev.Vars[k] = v
	}
	ev.Action, ev.DevPath = ev.Vars["ACTION"], ev.Vars["DEVPATH"]
	if ev.Action != action || ev.DevPath != devpath {
		return Uevent{}, fmt.Errorf("uevent: header %q disagrees with ACTION=%q DEVPATH=%q",
			truncate(header), truncate(ev.Action), truncate(ev.DevPath))
	}
	if strings.Contains(ev.DevPath, "/../") || strings.HasSuffix(ev.DevPath, "/..") {
		return Uevent{}, fmt.Errorf("uevent: DEVPATH %q climbs out of sysfs", truncate(ev.DevPath))
	}
	ev.Subsystem, ev.DevType, ev.DevName = ev.Vars["SUBSYSTEM"], ev.Vars["DEVTYPE"], ev.Vars["DEVNAME"]
	if strings.Contains(ev.DevName, "..") {
		return Uevent{}, fmt.Errorf("uevent: DEVNAME %q climbs out of /dev", truncate(ev.DevName))
	}
	if s, ok := ev.Vars["SEQNUM"]; ok {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Uevent{}, fmt.Errorf("uevent: SEQNUM %q is not a number", truncate(s))
		}
		ev.Seq = n
	}
	return ev, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
