package media

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/internal/policy"
)

// Action is what the policy demands for one device.
type Action string

const (
	// ActionNone: the device is not governed (internal disk, keyboard).
	ActionNone Action = ""
	// ActionReadOnly: BLKROSET on the disk and every partition, mounted
	// filesystems remounted read-only, optical nodes closed to writers.
	ActionReadOnly Action = "read-only"
	// ActionBlock: the USB interface is deauthorised; the device is gone.
	ActionBlock Action = "block"
	// ActionAllow: the device is usable, writes included.
	ActionAllow Action = "allow"
)

// Setting names of the media control (see docs/policy.md), shared with
// the console's policy form (internal/policy).
const (
	SettingStorage = policy.SettingMediaStorage
	SettingOptical = policy.SettingMediaOptical
	SettingMTP     = policy.SettingMediaMTP
	SettingAllow   = policy.SettingMediaAllow
)

// RuleException prefixes the rule of a device allowed by an exception:
// "exception=<ID>".
const RuleException = "exception="

// MaxAllowEntries bounds the allow-list.
const MaxAllowEntries = policy.MaxAllowEntries

// AllowEntry is one allow-list line: vendor:product:serial, with "*" as
// the serial meaning every device of that model.
type AllowEntry struct {
	Vendor, Product, Serial string
}

func (a AllowEntry) String() string { return a.Vendor + ":" + a.Product + ":" + a.Serial }

// Matches reports whether d is the device this entry names. Vendor and
// product compare case-insensitively (hex); the serial exactly. A device
// without a serial matches only a "*" entry.
func (a AllowEntry) Matches(d Device) bool {
	if !strings.EqualFold(a.Vendor, d.Vendor) || !strings.EqualFold(a.Product, d.Product) {
		return false
	}
	return a.Serial == "*" || (d.Serial != "" && a.Serial == d.Serial)
}

// Settings is the parsed media policy.
type Settings struct {
	Storage Action // ClassStorage: read-only (default), block or allow
	Optical Action // ClassOptical: read-only (default), block or allow
	MTP     Action // ClassMTP: block (default) or allow
	Allow   []AllowEntry
	// Exceptions (例外措置) the server folded into the policy, each with
	// its expiry and optional user. Decide honours every entry it is given:
	// the control passes only those in force (not expired, user logged in).
	Exceptions []policy.Exception
}

// DefaultSettings is what an empty settings map means: removable storage
// and optical drives read-only, MTP/PTP blocked, nothing allow-listed.
func DefaultSettings() Settings {
	return Settings{Storage: ActionReadOnly, Optical: ActionReadOnly, MTP: ActionBlock}
}

// ParseSettings validates and reads the media control's settings. It is
// strict: an unknown key, an unknown mode or a malformed allow-list entry
// is an error naming what to fix, never silently ignored.
func ParseSettings(m map[string]string) (Settings, error) {
	s := DefaultSettings()
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := strings.TrimSpace(m[k])
		switch k {
		case SettingStorage, SettingOptical:
			a := Action(v)
			if a != ActionReadOnly && a != ActionBlock && a != ActionAllow {
				errs = append(errs, fmt.Errorf("media setting %s=%q: use read-only, block or allow", k, truncate(v)))
				continue
			}
			if k == SettingStorage {
				s.Storage = a
			} else {
				s.Optical = a
			}
		case SettingMTP:
			a := Action(v)
			if a != ActionBlock && a != ActionAllow {
				errs = append(errs, fmt.Errorf("media setting mtp=%q: use block or allow (MTP/PTP runs in user space, so read-only cannot be enforced)", truncate(v)))
				continue
			}
			s.MTP = a
		case SettingAllow:
			list, err := parseAllowList(v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.Allow = list
		case policy.SettingExceptions:
			list, err := policy.ParseExceptions(v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.Exceptions = list
		default:
			errs = append(errs, fmt.Errorf("media setting %q is unknown: use storage, optical, mtp or allow", truncate(k)))
		}
	}
	if len(errs) > 0 {
		return DefaultSettings(), errors.Join(errs...)
	}
	return s, nil
}

func parseAllowList(v string) ([]AllowEntry, error) {
	entries := policy.SplitAllowList(v)
	if len(entries) > MaxAllowEntries {
		return nil, fmt.Errorf("media setting allow: %d entries, at most %d", len(entries), MaxAllowEntries)
	}
	var out []AllowEntry
	var errs []error
	for i, pe := range entries {
		if !policy.CheckHex4(pe.Vendor) || !policy.CheckHex4(pe.Product) || !policy.CheckAllowSerial(pe.Serial) {
			errs = append(errs, fmt.Errorf("media setting allow, entry %d %q: want VENDOR:PRODUCT:SERIAL, e.g. 0781:5581:4C530001231120115142 (4 hex digits each, serial as `mamori-agent media list` shows it, or * for every serial)", i+1, truncate(pe.String())))
			continue
		}
		n := pe.Normal()
		e := AllowEntry{Vendor: n.Vendor, Product: n.Product, Serial: n.Serial}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, errors.Join(errs...)
}

// Decide returns the action the settings demand for d and the rule that
// matched, e.g. "storage=read-only" or "allow=0781:5581:4C53…".
func Decide(s Settings, d Device) (Action, string) {
	var a Action
	var key string
	switch d.Class {
	case ClassStorage:
		a, key = s.Storage, SettingStorage
	case ClassOptical:
		a, key = s.Optical, SettingOptical
	case ClassMTP:
		a, key = s.MTP, SettingMTP
	default:
		return ActionNone, ""
	}
	if a != ActionAllow {
		for _, e := range s.Allow {
			if e.Matches(d) {
				return ActionAllow, SettingAllow + "=" + e.String()
			}
		}
		for _, e := range s.Exceptions {
			if (AllowEntry{Vendor: e.Vendor, Product: e.Product, Serial: e.Serial}).Matches(d) {
				return ActionAllow, RuleException + e.ID
			}
		}
	}
	if a == "" { // a zero Settings: fail closed
		a = ActionReadOnly
		if d.Class == ClassMTP {
			a = ActionBlock
		}
	}
	return a, key + "=" + string(a)
}
