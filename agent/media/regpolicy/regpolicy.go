// Package regpolicy is the Windows half of the media control: the
// removable-storage policies Windows itself enforces, written to the
// registry under HKLM.
//
//   - HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{class GUID}
//     with the DWORD values Deny_Read, Deny_Write and Deny_Execute, one key
//     per device class (removable disks, CD/DVD, WPD, tape, floppy). These
//     are the values the "Removable Storage Access" group policies write.
//   - HKLM\SYSTEM\CurrentControlSet\Control\StorageDevicePolicies\WriteProtect,
//     the older, machine-wide write protection of USB mass storage.
//
// Everything that decides — which values a policy wants, what differs
// between wanted and found — is in this file and runs on Linux CI. The
// _windows.go file only reads, writes and deletes registry values.
//
// Registry policy works per device class, never per device: there is no
// per-serial allow-list here. docs/windows.md says what that means for an
// approved exception and what would close the gap.
package regpolicy

import (
	"context"
	"errors"
	"fmt"
)

// Mode is what the policy demands for one class of device. The values are
// the media control's action names (see docs/policy.md).
type Mode string

const (
	// ModeAllow: no policy values; Windows' defaults apply.
	ModeAllow Mode = "allow"
	// ModeReadOnly: Deny_Write.
	ModeReadOnly Mode = "read-only"
	// ModeBlock: Deny_Read, Deny_Write and Deny_Execute (where the class
	// has it).
	ModeBlock Mode = "block"
)

// Valid reports whether m is one of the three modes.
func (m Mode) Valid() bool { return m == ModeAllow || m == ModeReadOnly || m == ModeBlock }

// Settings are the modes per media class, as the media policy names them.
type Settings struct {
	// Storage covers removable disks (USB sticks, SD cards), tape and
	// floppy drives, and StorageDevicePolicies\WriteProtect.
	Storage Mode
	// Optical covers CD/DVD/BD drives.
	Optical Mode
	// MTP covers Windows Portable Devices (phones, cameras over MTP/PTP).
	MTP Mode
}

// DefaultSettings mirror the media control's defaults: storage and optical
// read-only, MTP blocked.
func DefaultSettings() Settings {
	return Settings{Storage: ModeReadOnly, Optical: ModeReadOnly, MTP: ModeBlock}
}

// Validate names every mode that is not allow, read-only or block.
func (s Settings) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		m    Mode
	}{{"storage", s.Storage}, {"optical", s.Optical}, {"mtp", s.MTP}} {
		if !f.m.Valid() {
			errs = append(errs, fmt.Errorf("media %s: mode %q: use allow, read-only or block", f.name, f.m))
		}
	}
	return errors.Join(errs...)
}

// Registry paths, relative to HKLM.
const (
	RemovableStorageKey = `SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices`
	StoragePoliciesKey  = `SYSTEM\CurrentControlSet\Control\StorageDevicePolicies`
)

// Value names.
const (
	DenyRead     = "Deny_Read"
	DenyWrite    = "Deny_Write"
	DenyExecute  = "Deny_Execute"
	WriteProtect = "WriteProtect"
)

// Class is one device setup class the RemovableStorageDevices policy knows.
type Class struct {
	Name string
	GUID string // with braces, as the key name
	// Group is the media setting that governs it: "storage", "optical"
	// or "mtp".
	Group string
	// HasExecute is false for classes whose policy has no Deny_Execute
	// (WPD: the ADMX offers read and write only).
	HasExecute bool
}

// Classes are the device classes mamori manages, in a fixed order.
var Classes = []Class{
	{"removable disks", "{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}", "storage", true},
	{"CD and DVD", "{53f56308-b6bf-11d0-94f2-00a0c91efb8b}", "optical", true},
	{"WPD devices", "{6AC27878-A6FA-4155-BA85-F98F491D4F33}", "mtp", false},
	{"WPD (Windows Portable Devices)", "{F33FDC04-D1AC-4E8E-9A30-19BBD4B108AE}", "mtp", false},
	{"tape drives", "{53f5630b-b6bf-11d0-94f2-00a0c91efb8b}", "storage", true},
	{"floppy drives", "{53f56311-b6bf-11d0-94f2-00a0c91efb8b}", "storage", true},
}

// Value names one registry value mamori manages: Key relative to HKLM.
type Value struct {
	Key  string
	Name string
}

func (v Value) String() string { return `HKLM\` + v.Key + `\` + v.Name }

// State is a set of DWORD values; a managed value that is not in the map
// is absent from the registry.
type State map[Value]uint32

// Managed lists every value mamori owns, in a fixed order. Apply writes
// the ones a State holds and deletes the others; Read reads all of them.
func Managed() []Value {
	var out []Value
	for _, c := range Classes {
		k := RemovableStorageKey + `\` + c.GUID
		out = append(out, Value{k, DenyRead}, Value{k, DenyWrite})
		if c.HasExecute {
			out = append(out, Value{k, DenyExecute})
		}
	}
	return append(out, Value{StoragePoliciesKey, WriteProtect})
}

// Desired is the registry state a policy wants. It is pure: same settings,
// same state. Allow means "no value" rather than 0, so an allowed class
// leaves no trace of mamori in the registry.
func Desired(s Settings) (State, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	modes := map[string]Mode{"storage": s.Storage, "optical": s.Optical, "mtp": s.MTP}
	st := State{}
	for _, c := range Classes {
		k := RemovableStorageKey + `\` + c.GUID
		switch modes[c.Group] {
		case ModeReadOnly:
			st[Value{k, DenyWrite}] = 1
		case ModeBlock:
			st[Value{k, DenyRead}] = 1
			st[Value{k, DenyWrite}] = 1
			if c.HasExecute {
				st[Value{k, DenyExecute}] = 1
			}
		}
	}
	if s.Storage != ModeAllow {
		st[Value{StoragePoliciesKey, WriteProtect}] = 1
	}
	return st, nil
}

// Difference is one managed value whose registry state is not the wanted
// one.
type Difference struct {
	Value
	Want, Got       uint32
	WantSet, GotSet bool // false: the value is (to be) absent
}

func (d Difference) String() string {
	show := func(v uint32, set bool) string {
		if !set {
			return "absent"
		}
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%s: want %s, found %s", d.Value, show(d.Want, d.WantSet), show(d.Got, d.GotSet))
}

// Drift compares the wanted state with what was read back, over every
// managed value, and returns the differences in Managed order; none means
// the policy holds. Values mamori does not manage are ignored.
func Drift(want, got State) []Difference {
	var out []Difference
	for _, v := range Managed() {
		w, wok := want[v]
		g, gok := got[v]
		if wok != gok || w != g {
			out = append(out, Difference{Value: v, Want: w, Got: g, WantSet: wok, GotSet: gok})
		}
	}
	return out
}

// Store reads and writes the managed values. Registry is the real one
// (Windows only); tests use a map.
type Store interface {
	// Read returns every managed value that is present.
	Read(ctx context.Context) (State, error)
	// Write makes the managed values equal to want: sets the ones in want,
	// deletes the others.
	Write(ctx context.Context, want State) error
}

// Enforce reads the managed values back, and when they drifted from want
// writes want again and reads once more to check. It returns the drift it
// found (nil: the policy held), which the caller reports as an event; an
// error means the policy may not be in force.
func Enforce(ctx context.Context, s Store, want State) ([]Difference, error) {
	got, err := s.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read removable-storage policy: %w", err)
	}
	drift := Drift(want, got)
	if len(drift) == 0 {
		return nil, nil
	}
	if err := s.Write(ctx, want); err != nil {
		return drift, fmt.Errorf("re-apply removable-storage policy: %w", err)
	}
	got, err = s.Read(ctx)
	if err != nil {
		return drift, fmt.Errorf("read removable-storage policy after re-applying: %w", err)
	}
	if still := Drift(want, got); len(still) > 0 {
		return drift, fmt.Errorf("removable-storage policy still differs after re-applying (%s): another policy source (group policy?) may be overwriting it", still[0])
	}
	return drift, nil
}
