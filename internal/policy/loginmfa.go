package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Settings of the login-mfa control that decide who may log in how
// (docs/policy.md). The server reads them to build each terminal's MFA
// bundle; the agent gets their effect through the bundle.
const (
	// SettingMFAMethods: comma-separated second factors a user may log in
	// with: "totp" (an app or a hardware token), "tpm-pin" (a TPM-bound
	// PIN key). Default: both. Recovery and temporary codes always work.
	SettingMFAMethods = "methods"
	// SettingMFAGraceUntil: a date (YYYY-MM-DD, through the end of that day
	// in Japan Standard Time) or an RFC 3339 time. Until then a user
	// without any factor may log in without one; each such login is a
	// mfa_grace_login event and makes login-mfa non-compliant.
	SettingMFAGraceUntil = "grace_until"
	// SettingMFAUsers: comma-separated login names whose factors the
	// terminals of this scope receive (base policy or a group's
	// override), or "*" for every enrolled user. Unset or empty: nobody —
	// no terminal holds a user's secret until an officer names the user.
	SettingMFAUsers = "users"
	// SettingMFADeviceUsersPrefix + a device ID: comma-separated login
	// names that this one terminal receives as well. The server folds the
	// key of the device into SettingMFAUsers of its effective policy and
	// drops every other device's key (EffectiveForDevice), so a terminal
	// never learns who may log in elsewhere.
	SettingMFADeviceUsersPrefix = "users."
	// SettingMFARequireAttested: "true" sends a bundle only to a device
	// whose key was attested to be in its TPM. Default "false".
	SettingMFARequireAttested = "require_attested"
	// SettingMFAPrivilegedUsers names users whose temporary codes are
	// privileged ones (officer, one terminal, at most 1 h) besides root,
	// Administrator and the administrators the terminals report.
	SettingMFAPrivilegedUsers = "privileged_users"
)

// MaxMFAUsers bounds the names in one users setting (the setting's 4 KiB
// holds about 250 names anyway).
const MaxMFAUsers = 512

// loginNameRE is a login name as server/mfa.ValidUser takes it (Debian's
// adduser default).
var loginNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// deviceIDRE is a device ID as the server makes them (a UUID).
var deviceIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// MFA methods.
const (
	MFAMethodTOTP   = "totp"
	MFAMethodTPMPIN = "tpm-pin"
)

// jst is Japan Standard Time (no daylight saving), the zone a date in
// grace_until is read in.
var jst = time.FixedZone("JST", 9*3600)

// LoginMFA is the login-mfa control's MFA settings, parsed.
type LoginMFA struct {
	// Methods allowed, in the order given; never empty.
	Methods []string
	// GraceUntil is the end of the grace period; zero for none.
	GraceUntil time.Time
	// AllUsers: users is "*".
	AllUsers bool
	// Users named in users (sorted, unique); empty with AllUsers.
	Users []string
	// DeviceUsers are the per-terminal keys: device ID → sorted names.
	// An effective policy has none (they are folded into Users).
	DeviceUsers map[string][]string
	// RequireAttested: only devices with an attested TPM key get a bundle.
	RequireAttested bool
	// PrivilegedUsers is the privileged_users setting.
	PrivilegedUsers []string
}

// Allows reports whether user's factors may go to a terminal with these
// settings (after EffectiveForDevice folded its own key in).
func (l LoginMFA) Allows(user string) bool {
	return l.AllUsers || slices.Contains(l.Users, user)
}

// parseUserList reads a comma-separated list of login names; star allows
// "*" alone.
func parseUserList(v string, star bool) (all bool, users []string, err error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return false, nil, nil
	}
	if v == "*" {
		if !star {
			return false, nil, errors.New(`"*" is allowed only in the users setting of a scope; name the users of one terminal`)
		}
		return true, nil, nil
	}
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if !loginNameRE.MatchString(u) {
			return false, nil, fmt.Errorf("%q is not a login name (lower-case letters, digits, '_', '.', '-'; at most 32; or \"*\" alone for every enrolled user)", truncateSetting(u))
		}
		if !slices.Contains(users, u) {
			users = append(users, u)
		}
		if len(users) > MaxMFAUsers {
			return false, nil, fmt.Errorf("more than %d users", MaxMFAUsers)
		}
	}
	slices.Sort(users)
	return false, users, nil
}

// LoginMFASettings parses the login-mfa settings of p. A policy without
// the control gets the defaults.
func LoginMFASettings(p *mamoriv1.Policy) (LoginMFA, error) {
	s := p.GetControls()[ControlLoginMFA].GetSettings()
	out := LoginMFA{Methods: []string{MFAMethodTOTP, MFAMethodTPMPIN}}
	if v := strings.TrimSpace(s[SettingMFAMethods]); v != "" {
		out.Methods = nil
		for _, m := range strings.Split(v, ",") {
			m = strings.TrimSpace(m)
			switch m {
			case MFAMethodTOTP, MFAMethodTPMPIN:
			default:
				return LoginMFA{}, fmt.Errorf("control login-mfa: methods: %q is not a method (use totp, tpm-pin)", truncateSetting(m))
			}
			if !slices.Contains(out.Methods, m) {
				out.Methods = append(out.Methods, m)
			}
		}
	}
	var err error
	if out.AllUsers, out.Users, err = parseUserList(s[SettingMFAUsers], true); err != nil {
		return LoginMFA{}, fmt.Errorf("control login-mfa: users: %w", err)
	}
	for k, v := range s {
		id, ok := strings.CutPrefix(k, SettingMFADeviceUsersPrefix)
		if !ok {
			continue
		}
		if !deviceIDRE.MatchString(id) {
			return LoginMFA{}, fmt.Errorf("control login-mfa: setting %q: want users.DEVICE-ID with the device's ID as `mamorictl device show` prints it", truncateSetting(k))
		}
		_, us, err := parseUserList(v, false)
		if err != nil {
			return LoginMFA{}, fmt.Errorf("control login-mfa: %s: %w", k, err)
		}
		if out.DeviceUsers == nil {
			out.DeviceUsers = map[string][]string{}
		}
		out.DeviceUsers[id] = us
	}
	switch v := strings.TrimSpace(s[SettingMFARequireAttested]); v {
	case "", "false":
	case "true":
		out.RequireAttested = true
	default:
		return LoginMFA{}, fmt.Errorf("control login-mfa: require_attested: %q: use true or false", truncateSetting(v))
	}
	if _, out.PrivilegedUsers, err = parseUserList(s[SettingMFAPrivilegedUsers], false); err != nil {
		return LoginMFA{}, fmt.Errorf("control login-mfa: privileged_users: %w", err)
	}
	if v := strings.TrimSpace(s[SettingMFAGraceUntil]); v != "" {
		t, err := parseGraceUntil(v)
		if err != nil {
			return LoginMFA{}, fmt.Errorf("control login-mfa: grace_until: %w", err)
		}
		out.GraceUntil = t
	}
	return out, nil
}

func parseGraceUntil(v string) (time.Time, error) {
	var t time.Time
	if d, err := time.ParseInLocation(time.DateOnly, v, jst); err == nil {
		t = d.AddDate(0, 0, 1) // through the end of that day
	} else if ts, err := time.Parse(time.RFC3339, v); err == nil {
		t = ts
	} else {
		return time.Time{}, fmt.Errorf("%q: write a date like 2027-03-31 or a time like 2027-03-31T18:00:00+09:00", truncateSetting(v))
	}
	if t.Year() < 2000 || t.Year() > 2100 {
		return time.Time{}, fmt.Errorf("%q: the year must be between 2000 and 2100", truncateSetting(v))
	}
	return t.UTC(), nil
}

func truncateSetting(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// DeviceUsersKey is the login-mfa setting naming the users of one device.
func DeviceUsersKey(deviceID string) string { return SettingMFADeviceUsersPrefix + deviceID }

// HasDeviceUsers reports whether the login-mfa control that applies to a
// device of group (its group's override, else the base) has a key of its
// own for deviceID: then its effective policy differs from its group's.
func HasDeviceUsers(base *mamoriv1.Policy, group, deviceID string) bool {
	c := base.GetControls()[ControlLoginMFA]
	if g, ok := base.GetGroups()[group]; ok && group != "" {
		if gc, ok := g.GetControls()[ControlLoginMFA]; ok {
			c = gc
		}
	}
	_, ok := c.GetSettings()[DeviceUsersKey(deviceID)]
	return ok
}

// foldDeviceUsers rewrites an effective login-mfa control for deviceID:
// its own per-terminal key joins users, every per-terminal key goes. A
// malformed setting is left alone (Validate refused it before it was
// stored; the server then sends no bundle).
func foldDeviceUsers(c *mamoriv1.ControlPolicy, deviceID string) {
	if c == nil || c.Settings == nil {
		return
	}
	own, hasOwn := c.Settings[DeviceUsersKey(deviceID)]
	for k := range c.Settings {
		if strings.HasPrefix(k, SettingMFADeviceUsersPrefix) {
			delete(c.Settings, k)
		}
	}
	if !hasOwn || deviceID == "" {
		return
	}
	all, base, err := parseUserList(c.Settings[SettingMFAUsers], true)
	_, mine, err2 := parseUserList(own, false)
	if err != nil || err2 != nil || all {
		return
	}
	for _, u := range mine {
		if !slices.Contains(base, u) {
			base = append(base, u)
		}
	}
	slices.Sort(base)
	c.Settings[SettingMFAUsers] = strings.Join(base, ",")
}

// MFAAccess is what one device's effective policy lets it receive of the
// users' second factors (issue #14).
type MFAAccess struct {
	// Control: the policy has a login-mfa control for the device.
	Control bool
	// All: users is "*"; else Users lists the names (sorted).
	All   bool
	Users []string
	// RequireAttested: the policy sends bundles only to attested keys.
	RequireAttested bool
	// Err: the settings do not parse (the device then gets no secret).
	Err error
}

// MFAAccessOf reads an effective policy's login-mfa settings.
func MFAAccessOf(p *mamoriv1.Policy) MFAAccess {
	if _, ok := p.GetControls()[ControlLoginMFA]; !ok {
		return MFAAccess{}
	}
	l, err := LoginMFASettings(p)
	if err != nil {
		return MFAAccess{Control: true, Err: err}
	}
	return MFAAccess{Control: true, All: l.AllUsers, Users: l.Users, RequireAttested: l.RequireAttested}
}

// Allows reports whether user's factors may go to the device.
func (a MFAAccess) Allows(user string) bool {
	return a.Control && a.Err == nil && (a.All || slices.Contains(a.Users, user))
}

// Why a device gets no factor at all (MFAAccess.Refusal).
const (
	MFARefusedNoControl   = "no_control"   // the policy has no login-mfa control
	MFARefusedBadSettings = "bad_settings" // its settings do not parse
	MFARefusedNotAttested = "not_attested" // require_attested, and the key is not
	MFARefusedNoUsers     = "no_users"     // no user is named
)

// Refusal says why a device with this access and attestation gets no
// factor at all (an MFARefused constant); "" when it gets those of the
// users it allows.
func (a MFAAccess) Refusal(attested bool) string {
	switch {
	case !a.Control:
		return MFARefusedNoControl
	case a.Err != nil:
		return MFARefusedBadSettings
	case a.RequireAttested && !attested:
		return MFARefusedNotAttested
	case !a.All && len(a.Users) == 0:
		return MFARefusedNoUsers
	}
	return ""
}
