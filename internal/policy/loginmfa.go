package policy

import (
	"fmt"
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
)

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
