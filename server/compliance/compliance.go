// Package compliance decides, from what a device reported and the policy,
// whether the device is compliant. It is pure: no I/O, no clock of its own.
//
// The agent reports what it observed; this package is the only place that
// turns observations into a verdict, so the console, mamorictl and the
// audit trail all agree on why a device failed.
package compliance

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Identity is what the server itself knows about the reporting device,
// from its verified certificate rather than from the report.
type Identity struct {
	// KeyAttested: the device key was proved to be inside its TPM.
	KeyAttested bool
}

// Evaluate returns the verdict for one report: COMPLIANT when every control
// the policy requires reported ENFORCED, no control reported a proven
// violation (FAILED with evidence policy.EvidenceViolation, required or
// not), and, when the policy requires a TPM key, the certificate says the
// key was attested; NONCOMPLIANT otherwise, with one reason per failing
// control, sorted by control name.
// Staleness is not judged here (see State).
func Evaluate(p *mamoriv1.Policy, statuses []*mamoriv1.ControlStatus, id Identity) (verdict string, reasons []string) {
	byName := make(map[string]*mamoriv1.ControlStatus, len(statuses))
	for _, s := range statuses {
		byName[s.GetControl()] = s
	}
	names := make([]string, 0, len(p.GetControls()))
	for name, c := range p.GetControls() {
		if c.GetRequired() {
			names = append(names, name)
		}
	}
	for _, s := range statuses {
		if s.GetState() == mamoriv1.ControlState_CONTROL_STATE_FAILED && s.GetEvidence()[policy.EvidenceViolation] != "" &&
			!slices.Contains(names, s.GetControl()) {
			names = append(names, s.GetControl())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		s, ok := byName[name]
		switch {
		case !ok:
			reasons = append(reasons, NotReportedReason(name))
		case s.GetState() != mamoriv1.ControlState_CONTROL_STATE_ENFORCED:
			reasons = append(reasons, Reason(name, s.GetState(), s.GetDetail()))
		}
	}
	if req, _ := policy.RequireTPMKey(p); req && !id.KeyAttested {
		reasons = append(reasons, ReasonTPMKeyNotAttested)
	}
	if len(reasons) > 0 {
		return store.VerdictNoncompliant, reasons
	}
	return store.VerdictCompliant, nil
}

// Reasons are stored as the English text built here; the console
// recognises them by these same functions to show them in the reader's
// language (server/web), so stored rows stay readable as they are.

// Reason is the reason for a required control in state other than
// ENFORCED, with the agent's English detail.
func Reason(control string, state mamoriv1.ControlState, detail string) string {
	r := fmt.Sprintf("%s: %s", control, StateName(state))
	if detail != "" {
		r += " (" + detail + ")"
	}
	return r
}

// NotReportedReason is the reason for a required control the device did not
// report.
func NotReportedReason(control string) string { return control + ": not reported" }

// ReasonTPMKeyNotAttested is the reason when the policy requires a TPM key
// and the device's key was not attested.
const ReasonTPMKeyNotAttested = "agent: the device key is not attested in a TPM (policy require_tpm_key)"

// State derives what an operator sees from the stored verdict and the clock:
// a device whose last report is older than the policy's max report age is
// OFFLINE, whatever its last verdict. Offline is not failing: an offline
// device's last verdict is kept and shown beside it.
func State(d store.Device, p *mamoriv1.Policy, now time.Time) (c mamoriv1.Compliance, offlineSince time.Time) {
	switch {
	case d.Verdict == store.VerdictRevoked || !d.RevokedAt.IsZero():
		return mamoriv1.Compliance_COMPLIANCE_REVOKED, time.Time{}
	case d.LastSeen.IsZero():
		return mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, time.Time{}
	}
	if since := d.LastSeen.Add(policy.MaxReportAge(p)); now.After(since) {
		return mamoriv1.Compliance_COMPLIANCE_OFFLINE, since
	}
	if d.Verdict == store.VerdictCompliant {
		return mamoriv1.Compliance_COMPLIANCE_COMPLIANT, time.Time{}
	}
	return mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, time.Time{}
}

// OfflineBefore is the cut-off for store queries: a device last seen before
// it is OFFLINE. p is a device's effective policy; for fleet queries use
// OfflineCut, which honours groups with a max report age of their own.
func OfflineBefore(p *mamoriv1.Policy, now time.Time) time.Time {
	return now.Add(-policy.MaxReportAge(p))
}

// OfflineCut is the cut-off for fleet queries under the policy document
// p: the base max report age, and each group's own where it sets one, so
// fleet counts and lists agree with each device's page.
func OfflineCut(p *mamoriv1.Policy, now time.Time) store.OfflineCut {
	c := store.OfflineCut{Default: OfflineBefore(p, now)}
	for name, g := range p.GetGroups() {
		if g.GetMaxReportAge() != nil {
			if c.Groups == nil {
				c.Groups = map[string]time.Time{}
			}
			c.Groups[name] = now.Add(-g.GetMaxReportAge().AsDuration())
		}
	}
	return c
}

// StateName is the short upper-case name of a control state, as operators
// read it: ENFORCED, MONITORING, DEGRADED, FAILED, NOT_APPLICABLE.
func StateName(s mamoriv1.ControlState) string {
	const prefix = "CONTROL_STATE_"
	n := s.String()
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}
