// Package policy is the policy model both binaries share: the names of the
// controls, the default policy a new server starts with, and validation of a
// policy an operator submits.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Control names. A control plugs into the agent under one of these names and
// the policy addresses it by the same name.
const (
	ControlAgent     = "agent"
	ControlMedia     = "media"
	ControlLoginMFA  = "login-mfa"
	ControlIsolation = "isolation"
)

// EvidenceViolation is the evidence key a control sets, with a sentence
// for a person, when what it observed breaks the policy whatever the
// control's mode — the isolation control when a canary in another tier is
// reachable. A control reporting FAILED with it counts against the
// device's compliance even when the policy does not require the control:
// monitor mode is for seeing what enforcement would block, not for hiding
// that the terminal can reach another tier.
const EvidenceViolation = "violation"

// Limits that keep a policy (and the reports it asks for) bounded.
const (
	MinReportInterval = 5 * time.Second
	MaxReportInterval = 24 * time.Hour
	MaxControls       = 32
	MaxSettings       = 256
	MaxSettingLen     = 4096
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
var settingKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// Default returns the policy a new server starts with: the media and
// isolation controls in monitor mode (they report what they would block and
// block nothing), only the agent's self-check required, a report a minute,
// a device OFFLINE after ten minutes of silence. Monitor first is
// deliberate: a rollout is checked before it bites.
func Default() *mamoriv1.Policy {
	return &mamoriv1.Policy{
		Version: 1,
		Controls: map[string]*mamoriv1.ControlPolicy{
			ControlAgent:     {Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true},
			ControlMedia:     {Mode: mamoriv1.Mode_MODE_MONITOR},
			ControlIsolation: {Mode: mamoriv1.Mode_MODE_MONITOR},
			// Monitor: PAM is left alone; the agent reports which logins a
			// second factor would have refused (agent/loginmfa).
			ControlLoginMFA: {Mode: mamoriv1.Mode_MODE_MONITOR},
		},
		ReportInterval: durationpb.New(time.Minute),
		MaxReportAge:   durationpb.New(10 * time.Minute),
	}
}

// Validate checks a policy an operator submitted. It refuses anything the
// agent could not act on, so a bad policy never reaches a terminal.
func Validate(p *mamoriv1.Policy) error {
	if p == nil {
		return errors.New("policy is empty")
	}
	var errs []error
	if len(p.Controls) > MaxControls {
		errs = append(errs, fmt.Errorf("policy has %d controls; at most %d", len(p.Controls), MaxControls))
	}
	errs = append(errs, validateControls("", p.Controls)...)
	ri, err := duration(p.ReportInterval, "report_interval")
	if err != nil {
		errs = append(errs, err)
	} else if ri < MinReportInterval || ri > MaxReportInterval {
		errs = append(errs, fmt.Errorf("report_interval %v: must be between %v and %v", ri, MinReportInterval, MaxReportInterval))
	}
	ma, err := duration(p.MaxReportAge, "max_report_age")
	if err != nil {
		errs = append(errs, err)
	} else if ri > 0 && ma < 2*ri {
		errs = append(errs, fmt.Errorf("max_report_age %v: must be at least twice report_interval (%v), or healthy devices flap OFFLINE", ma, 2*ri))
	}
	errs = append(errs, validateGroups(p)...)
	if len(p.Exceptions) > MaxExceptionsPerDevice {
		errs = append(errs, fmt.Errorf("policy carries %d exceptions; at most %d", len(p.Exceptions), MaxExceptionsPerDevice))
	}
	return errors.Join(errs...)
}

// validateControls checks a control map; where is "" for the base policy or
// "group X: " for an override.
func validateControls(where string, controls map[string]*mamoriv1.ControlPolicy) []error {
	var errs []error
	for name, c := range controls {
		if !nameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%scontrol name %q: use lower-case letters, digits and '-'", where, name))
			continue
		}
		if c == nil {
			errs = append(errs, fmt.Errorf("%scontrol %s: empty", where, name))
			continue
		}
		if c.Mode != mamoriv1.Mode_MODE_MONITOR && c.Mode != mamoriv1.Mode_MODE_ENFORCE {
			errs = append(errs, fmt.Errorf("%scontrol %s: mode must be monitor or enforce", where, name))
		}
		if len(c.Settings) > MaxSettings {
			errs = append(errs, fmt.Errorf("%scontrol %s: %d settings; at most %d", where, name, len(c.Settings), MaxSettings))
		}
		if name == ControlLoginMFA {
			if _, err := LoginMFASettings(&mamoriv1.Policy{Controls: map[string]*mamoriv1.ControlPolicy{name: c}}); err != nil {
				errs = append(errs, fmt.Errorf("%s%w", where, err))
			}
		}
		for k, v := range c.Settings {
			if !settingKeyRE.MatchString(k) {
				errs = append(errs, fmt.Errorf("%scontrol %s: setting name %q is not allowed", where, name, k))
			}
			limit := MaxSettingLen
			if name == ControlMedia && k == SettingExceptions {
				limit = MaxExceptionsSettingLen
			}
			if len(v) > limit {
				errs = append(errs, fmt.Errorf("%scontrol %s: setting %s is %d bytes; at most %d", where, name, k, len(v), limit))
			}
		}
	}
	return errs
}

func duration(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, fmt.Errorf("%s is missing", field)
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return d.AsDuration(), nil
}

// SettingRequireTPMKey is the `agent` control's setting that requires the
// device key to live in a TPM. The agent reports where its key is; the
// server also checks the certificate, which says whether the key was
// attested at enrolment (pki.KeyAttested), so a device cannot claim it.
const SettingRequireTPMKey = "require_tpm_key"

// RequireTPMKey reads require_tpm_key from the agent control's settings.
// An invalid value yields true (the stricter reading) and an error.
func RequireTPMKey(p *mamoriv1.Policy) (bool, error) {
	v, ok := p.GetControls()[ControlAgent].GetSettings()[SettingRequireTPMKey]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return true, fmt.Errorf("setting %s=%q is not true or false; treating it as true", SettingRequireTPMKey, v)
	}
	return b, nil
}

// ReportInterval returns the policy's report interval, or a minute when the
// policy has none.
func ReportInterval(p *mamoriv1.Policy) time.Duration {
	if d := p.GetReportInterval(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return time.Minute
}

// MaxReportAge returns the age after which a device is OFFLINE.
func MaxReportAge(p *mamoriv1.Policy) time.Duration {
	if d := p.GetMaxReportAge(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return 10 * time.Minute
}

// Clone returns a deep copy.
func Clone(p *mamoriv1.Policy) *mamoriv1.Policy { return proto.Clone(p).(*mamoriv1.Policy) }
