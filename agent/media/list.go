package media

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
)

// List classifies the devices present now, without a running control, for
// `mamori-agent media list`: what each device is, what the settings demand
// and its current state as read back from the system. Ungoverned devices
// (internal disks) are listed too, with action "-".
func List(o Options, s Settings) ([]DeviceState, error) {
	o.defaults()
	c := Classifier{Root: o.SysRoot}
	blocks, err := c.Blocks()
	ifaces, ierr := c.USBInterfaces()
	var out []DeviceState
	for _, d := range append(blocks, ifaces...) {
		if d.DevType == "usb_interface" && d.Class != ClassMTP {
			continue
		}
		a, rule := Decide(s, d)
		ds := DeviceState{Device: d, Action: a, Rule: rule}
		if d.DevType == "usb_interface" {
			b, err := readAttr(filepath.Join(o.SysRoot, d.SysPath, "authorized"))
			ds.Done = "authorized=" + string(trimNL(b))
			if err != nil {
				ds.Done = "authorized unknown"
			}
		} else {
			switch ro, err := getBlockRO(filepath.Join(o.DevRoot, d.DevName)); {
			case errors.Is(err, os.ErrNotExist):
				ds.Done = "no device node"
			case err != nil:
				ds.Done = "unknown: " + err.Error()
			case ro:
				ds.Done = "read-only"
			default:
				ds.Done = "writable"
			}
		}
		out = append(out, ds)
	}
	return out, errors.Join(err, ierr)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// WriteList prints devices as a table: device, class, bus, vendor:product,
// serial, size, policy action (and rule), state.
func WriteList(w io.Writer, devs []DeviceState) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tCLASS\tBUS\tID\tSERIAL\tSIZE\tPOLICY\tSTATE")
	for _, ds := range devs {
		d := ds.Device
		id, action := "-", "-"
		if d.Vendor != "" || d.Product != "" {
			id = d.Vendor + ":" + d.Product
		}
		if ds.Action != ActionNone {
			action = string(ds.Action) + " (" + ds.Rule + ")"
		}
		serial := d.Serial
		if serial == "" {
			serial = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d MB\t%s\t%s\n", d.Name, d.Class, d.Bus, id, serial, d.SizeBytes/1e6, action, ds.Done)
	}
	return tw.Flush()
}
