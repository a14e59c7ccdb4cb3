package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Settings of the media control that the server's editor reads and
// writes (docs/policy.md, "The media control"). The agent parses them
// strictly itself (agent/media); these are the names and the checks the
// console needs to offer them as a form.
const (
	SettingMediaStorage = "storage"
	SettingMediaOptical = "optical"
	SettingMediaMTP     = "mtp"
	SettingMediaAllow   = "allow"
	// MaxAllowEntries bounds the media allow-list.
	MaxAllowEntries = 256
)

// MediaClass is a device class the media control governs, its setting and
// the actions a policy may demand for it, the default first.
type MediaClass struct {
	Setting string
	Actions []string
}

// MediaClasses are the classes in the order the documentation lists them.
// MTP cannot be read-only: it is file transfer in user space.
var MediaClasses = []MediaClass{
	{SettingMediaStorage, []string{"read-only", "block", "allow"}},
	{SettingMediaOptical, []string{"read-only", "block", "allow"}},
	{SettingMediaMTP, []string{"block", "allow"}},
}

// Default is the action an absent setting means.
func (c MediaClass) Default() string { return c.Actions[0] }

// Allows reports whether a is an action this class accepts.
func (c MediaClass) Allows(a string) bool { return slices.Contains(c.Actions, a) }

// AllowEntry is one media allow-list entry: VENDOR:PRODUCT:SERIAL, the
// serial "*" meaning every device of the model.
type AllowEntry struct {
	Vendor, Product, Serial string
}

func (a AllowEntry) String() string { return a.Vendor + ":" + a.Product + ":" + a.Serial }

// Normal is a with vendor and product in lower case, as the agent
// compares them.
func (a AllowEntry) Normal() AllowEntry {
	return AllowEntry{strings.ToLower(a.Vendor), strings.ToLower(a.Product), a.Serial}
}

// pamServiceRE is the rule for a PAM service name; the agent's
// login-mfa control (agent/loginmfa) checks with CheckPAMService too.
var pamServiceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// CheckHex4 reports whether s is a USB vendor or product ID: 4 hex digits.
func CheckHex4(s string) bool { return hex4RE.MatchString(s) }

// CheckAllowSerial reports whether s is an allow-list serial: printable
// ASCII without space or comma (at most 126), or "*".
func CheckAllowSerial(s string) bool { return serialRE.MatchString(s) }

// SplitAllowList splits the allow setting into its entries as the agent
// does (commas, new lines, spaces), without checking them; an entry
// without two colons keeps what it has in Vendor.
func SplitAllowList(v string) []AllowEntry {
	var out []AllowEntry
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' || r == '\t' || r == '\r' }) {
		parts := strings.SplitN(f, ":", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		out = append(out, AllowEntry{parts[0], parts[1], parts[2]})
	}
	return out
}

// SettingMFAServices is the login-mfa setting naming the PAM services the
// agent checks (agent/loginmfa), at most MaxMFAServices.
const (
	SettingMFAServices = "services"
	MaxMFAServices     = 32
)

// CheckPAMService reports whether s is a PAM service name the agent accepts.
func CheckPAMService(s string) bool { return pamServiceRE.MatchString(s) }

// CheckGraceUntil checks a login-mfa grace_until value: a date
// YYYY-MM-DD or an RFC 3339 time, year 2000–2100.
func CheckGraceUntil(v string) error {
	if _, err := parseGraceUntil(strings.TrimSpace(v)); err != nil {
		return fmt.Errorf("grace_until: %w", err)
	}
	return nil
}
