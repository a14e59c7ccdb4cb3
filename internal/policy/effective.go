package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Per-group overrides and exceptions (例外措置).
//
// The stored policy is one versioned document: the base policy plus
// overrides per device group. What a device enforces is its effective
// policy: the base, with every control its group names replaced whole and
// the group's durations when set, plus the exceptions in force for it
// folded into the media control's `exceptions` setting. The server
// computes it (Effective) and stamps it with a digest; the agent echoes
// the digest, and the server resends when it differs.
const (
	MaxGroups = 256
	// MaxGroupNameLength is in characters, like the server's device
	// group names.
	MaxGroupNameLength = 64
	// MaxExceptionsPerDevice bounds the exceptions folded into one
	// effective policy (the soonest-expiring win).
	MaxExceptionsPerDevice = 64
	// MaxExceptionsSettingLen bounds the media `exceptions` setting.
	MaxExceptionsSettingLen = 32 << 10
	// SettingExceptions is the media control's setting the server fills
	// with the exceptions in force; an operator cannot set it.
	SettingExceptions = "exceptions"
)

var (
	hex4RE = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)
	// serialRE: printable ASCII without space or comma (the media
	// allow-list's rule); "*" is refused for exceptions separately.
	serialRE = regexp.MustCompile(`^[\x21-\x2b\x2d-\x7e]{1,126}$`)
	userRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)
	idRE     = regexp.MustCompile(`^[0-9a-f-]{1,64}$`)
)

// CheckGroupName validates a device group name as a policy key.
func CheckGroupName(g string) error {
	switch {
	case g == "":
		return errors.New("group name is empty")
	case !utf8.ValidString(g):
		return errors.New("group name is not UTF-8")
	case utf8.RuneCountInString(g) > MaxGroupNameLength:
		return fmt.Errorf("group name %q: at most %d characters", g, MaxGroupNameLength)
	case strings.TrimSpace(g) != g:
		return fmt.Errorf("group name %q has leading or trailing space", g)
	}
	for _, r := range g {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return errors.New("group name contains a control or format character")
		}
	}
	return nil
}

func validateGroups(p *mamoriv1.Policy) []error {
	var errs []error
	if len(p.Groups) > MaxGroups {
		errs = append(errs, fmt.Errorf("policy has %d groups; at most %d", len(p.Groups), MaxGroups))
	}
	for name, g := range p.Groups {
		if err := CheckGroupName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if g == nil {
			errs = append(errs, fmt.Errorf("group %s: empty", name))
			continue
		}
		if len(g.Controls) > MaxControls {
			errs = append(errs, fmt.Errorf("group %s: %d controls; at most %d", name, len(g.Controls), MaxControls))
		}
		errs = append(errs, validateControls("group "+name+": ", g.Controls)...)
		// The group's durations, when set, must hold like the base's,
		// and together with the inherited one.
		if g.ReportInterval != nil || g.MaxReportAge != nil {
			effRI, effMA := p.ReportInterval, p.MaxReportAge
			if g.ReportInterval != nil {
				effRI = g.ReportInterval
			}
			if g.MaxReportAge != nil {
				effMA = g.MaxReportAge
			}
			ri, err := duration(effRI, "group "+name+": report_interval")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ri < MinReportInterval || ri > MaxReportInterval {
				errs = append(errs, fmt.Errorf("group %s: report_interval %v: must be between %v and %v", name, ri, MinReportInterval, MaxReportInterval))
			}
			ma, err := duration(effMA, "group "+name+": max_report_age")
			if err != nil {
				errs = append(errs, err)
			} else if ma < 2*ri {
				errs = append(errs, fmt.Errorf("group %s: max_report_age %v: must be at least twice report_interval (%v)", name, ma, ri))
			}
		}
	}
	return errs
}

// ValidateDocument checks a policy an operator submits as the stored
// document: Validate, plus what only the server may fill (the media
// `exceptions` setting, and the fields of an effective policy).
func ValidateDocument(p *mamoriv1.Policy) error {
	if err := Validate(p); err != nil {
		return err
	}
	var errs []error
	if p.Group != "" || len(p.Exceptions) > 0 || p.Digest != "" {
		errs = append(errs, errors.New("group, exceptions and digest are set by the server in effective policies; leave them out"))
	}
	if _, ok := p.Controls[ControlMedia].GetSettings()[SettingExceptions]; ok {
		errs = append(errs, errors.New("media setting exceptions is filled by the server from approved exceptions; approve an exception instead"))
	}
	for name, g := range p.Groups {
		if _, ok := g.GetControls()[ControlMedia].GetSettings()[SettingExceptions]; ok {
			errs = append(errs, fmt.Errorf("group %s: media setting exceptions is filled by the server; approve an exception instead", name))
		}
	}
	return errors.Join(errs...)
}

// Exception is one exception (例外措置) in force for a device: a USB
// device allowed until Expires, for User only when User is set.
type Exception struct {
	ID                      string
	Vendor, Product, Serial string
	User                    string
	Expires                 time.Time
}

// USB is the allow-list form VENDOR:PRODUCT:SERIAL.
func (e Exception) USB() string { return e.Vendor + ":" + e.Product + ":" + e.Serial }

// ActiveAt reports whether the exception is in force at t.
func (e Exception) ActiveAt(t time.Time) bool { return t.Before(e.Expires) }

// ParseUSB reads VENDOR:PRODUCT:SERIAL for an exception. Unlike the
// allow-list it refuses "*": an exception names one device.
func ParseUSB(s string) (vendor, product, serial string, err error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || !hex4RE.MatchString(parts[0]) || !hex4RE.MatchString(parts[1]) || !serialRE.MatchString(parts[2]) || parts[2] == "*" {
		return "", "", "", fmt.Errorf("USB device %q: want VENDOR:PRODUCT:SERIAL, e.g. 0781:5581:4C530001231120115142 (4 hex digits each, the serial exactly as `mamori-agent media list` shows it; * is not allowed in an exception)", truncate(s))
	}
	return strings.ToLower(parts[0]), strings.ToLower(parts[1]), parts[2], nil
}

// CheckUser validates a login name an exception is bound to.
func CheckUser(u string) error {
	if u != "" && !userRE.MatchString(u) {
		return fmt.Errorf("user %q: a login name of letters, digits, '_', '.', '@', '-' (at most 64)", truncate(u))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// FormatExceptions encodes exceptions as the media `exceptions` setting:
// one line each, "ID VENDOR:PRODUCT:SERIAL EXPIRES [USER]", EXPIRES in
// RFC 3339 UTC. Ordered by ID, so equal sets encode alike.
func FormatExceptions(es []Exception) string {
	es = slices.Clone(es)
	slices.SortFunc(es, func(a, b Exception) int { return strings.Compare(a.ID, b.ID) })
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s %s %s", e.ID, e.USB(), e.Expires.UTC().Format(time.RFC3339))
		if e.User != "" {
			b.WriteString(" " + e.User)
		}
	}
	return b.String()
}

// ParseExceptions reads the media `exceptions` setting. It is strict: any
// malformed line is an error (the media control then enforces its
// defaults, fail closed).
func ParseExceptions(v string) ([]Exception, error) {
	var out []Exception
	var errs []error
	lines := strings.Split(strings.ReplaceAll(v, "\r\n", "\n"), "\n")
	n := 0
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n++
		if n > MaxExceptionsPerDevice {
			return nil, fmt.Errorf("media setting exceptions: more than %d entries", MaxExceptionsPerDevice)
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f) > 4 {
			errs = append(errs, fmt.Errorf("media setting exceptions, line %d: want ID VENDOR:PRODUCT:SERIAL EXPIRES [USER]", i+1))
			continue
		}
		var e Exception
		var err error
		if !idRE.MatchString(f[0]) {
			errs = append(errs, fmt.Errorf("media setting exceptions, line %d: bad ID %q", i+1, truncate(f[0])))
			continue
		}
		e.ID = f[0]
		if e.Vendor, e.Product, e.Serial, err = ParseUSB(f[1]); err != nil {
			errs = append(errs, fmt.Errorf("media setting exceptions, line %d: %w", i+1, err))
			continue
		}
		if e.Expires, err = time.Parse(time.RFC3339, f[2]); err != nil {
			errs = append(errs, fmt.Errorf("media setting exceptions, line %d: expiry %q is not RFC 3339", i+1, truncate(f[2])))
			continue
		}
		// The server writes expiries it was given as future times; one
		// before 2000 (Go's zero time among them, which reads as "no
		// expiry" to much code) is a damaged setting, not an exception.
		if e.Expires.UTC().Year() < 2000 {
			errs = append(errs, fmt.Errorf("media setting exceptions, line %d: expiry %q is before 2000", i+1, truncate(f[2])))
			continue
		}
		if len(f) == 4 {
			if err := CheckUser(f[3]); err != nil || f[3] == "" {
				errs = append(errs, fmt.Errorf("media setting exceptions, line %d: %v", i+1, err))
				continue
			}
			e.User = f[3]
		}
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Effective computes the policy one device enforces: base, with group's
// override and the exceptions in force at now. Exceptions that expired are
// dropped; at most MaxExceptionsPerDevice are kept (the soonest-expiring).
// The result carries no groups, names its group, and has its digest set.
// base is not modified. Per-terminal login-mfa keys are dropped; use
// EffectiveForDevice for a device's own policy.
func Effective(base *mamoriv1.Policy, group string, exceptions []Exception, now time.Time) *mamoriv1.Policy {
	return EffectiveForDevice(base, group, "", exceptions, now)
}

// EffectiveForDevice is Effective for one device: the login-mfa key
// naming deviceID's users is folded into the control's users setting and
// every other device's key is dropped (SettingMFADeviceUsersPrefix).
func EffectiveForDevice(base *mamoriv1.Policy, group, deviceID string, exceptions []Exception, now time.Time) *mamoriv1.Policy {
	eff := Clone(base)
	eff.Groups, eff.Group, eff.Exceptions, eff.Digest = nil, "", nil, ""
	if eff.Controls == nil {
		eff.Controls = map[string]*mamoriv1.ControlPolicy{}
	}
	if g, ok := base.GetGroups()[group]; ok && group != "" {
		eff.Group = group
		for name, c := range g.GetControls() {
			eff.Controls[name] = proto.Clone(c).(*mamoriv1.ControlPolicy)
		}
		if g.ReportInterval != nil {
			eff.ReportInterval = cloneDur(g.ReportInterval)
		}
		if g.MaxReportAge != nil {
			eff.MaxReportAge = cloneDur(g.MaxReportAge)
		}
	}
	foldDeviceUsers(eff.Controls[ControlLoginMFA], deviceID)
	var active []Exception
	for _, e := range exceptions {
		if now.IsZero() || e.ActiveAt(now) {
			active = append(active, e)
		}
	}
	slices.SortFunc(active, func(a, b Exception) int {
		if c := a.Expires.Compare(b.Expires); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(active) > MaxExceptionsPerDevice {
		active = active[:MaxExceptionsPerDevice]
	}
	if m, ok := eff.Controls[ControlMedia]; ok && m != nil {
		if m.Settings == nil {
			m.Settings = map[string]string{}
		}
		delete(m.Settings, SettingExceptions)
		if len(active) > 0 {
			m.Settings[SettingExceptions] = FormatExceptions(active)
		}
	}
	slices.SortFunc(active, func(a, b Exception) int { return strings.Compare(a.ID, b.ID) })
	for _, e := range active {
		eff.Exceptions = append(eff.Exceptions, &mamoriv1.PolicyException{
			Id: e.ID, Usb: e.USB(), User: e.User, ExpiresAt: timestamppb.New(e.Expires),
		})
	}
	eff.Digest = Digest(eff)
	return eff
}

func cloneDur(d *durationpb.Duration) *durationpb.Duration {
	return proto.Clone(d).(*durationpb.Duration)
}

// Digest is the hex SHA-256 of p's deterministic encoding with the digest
// field empty.
func Digest(p *mamoriv1.Policy) string {
	c := Clone(p)
	c.Digest = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
