package compliance

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

func st(control string, s mamoriv1.ControlState, detail string) *mamoriv1.ControlStatus {
	return &mamoriv1.ControlStatus{Control: control, State: s, Detail: detail}
}

func TestEvaluate(t *testing.T) {
	p := policy.Default()
	p.Controls["media"] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true}
	p.Controls["isolation"] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR} // not required
	const (
		enf  = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		mon  = mamoriv1.ControlState_CONTROL_STATE_MONITORING
		deg  = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		fail = mamoriv1.ControlState_CONTROL_STATE_FAILED
	)
	cases := []struct {
		name        string
		statuses    []*mamoriv1.ControlStatus
		wantVerdict string
		wantReasons []string
	}{
		{"all required enforced", []*mamoriv1.ControlStatus{st("agent", enf, ""), st("media", enf, ""), st("isolation", fail, "x")},
			store.VerdictCompliant, nil},
		{"required control missing", []*mamoriv1.ControlStatus{st("agent", enf, "")},
			store.VerdictNoncompliant, []string{"media: not reported"}},
		{"required control degraded with detail", []*mamoriv1.ControlStatus{st("agent", enf, ""), st("media", deg, "udev rule missing")},
			store.VerdictNoncompliant, []string{"media: DEGRADED (udev rule missing)"}},
		{"monitoring is not enforced", []*mamoriv1.ControlStatus{st("agent", enf, ""), st("media", mon, "")},
			store.VerdictNoncompliant, []string{"media: MONITORING"}},
		{"a proven violation counts though not required", []*mamoriv1.ControlStatus{st("agent", enf, ""), st("media", enf, ""),
			{Control: "isolation", State: fail, Detail: "this terminal can reach 172.31.0.1:443", Evidence: map[string]string{policy.EvidenceViolation: "this terminal can reach 172.31.0.1:443"}}},
			store.VerdictNoncompliant, []string{"isolation: FAILED (this terminal can reach 172.31.0.1:443)"}},
		{"a violation marker without FAILED does not count", []*mamoriv1.ControlStatus{st("agent", enf, ""), st("media", enf, ""),
			{Control: "isolation", State: mon, Evidence: map[string]string{policy.EvidenceViolation: "x"}}},
			store.VerdictCompliant, nil},
		{"reasons sorted by control", nil,
			store.VerdictNoncompliant, []string{"agent: not reported", "media: not reported"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, r := Evaluate(p, tc.statuses, Identity{})
			if v != tc.wantVerdict {
				t.Errorf("verdict %s, want %s", v, tc.wantVerdict)
			}
			if diff := cmp.Diff(tc.wantReasons, r); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
}

// require_tpm_key is judged from the certificate, not from what the agent
// says about itself.
func TestRequireTPMKey(t *testing.T) {
	p := policy.Default()
	p.Controls["agent"].Settings = map[string]string{"require_tpm_key": "true"}
	ok := []*mamoriv1.ControlStatus{st("agent", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")}
	if v, r := Evaluate(p, ok, Identity{KeyAttested: false}); v != store.VerdictNoncompliant || len(r) != 1 || !strings.Contains(r[0], "TPM") {
		t.Fatalf("software key under require_tpm_key: %s %q", v, r)
	}
	if v, r := Evaluate(p, ok, Identity{KeyAttested: true}); v != store.VerdictCompliant {
		t.Fatalf("attested key: %s %q", v, r)
	}
	p.Controls["agent"].Settings["require_tpm_key"] = "yes please"
	if v, _ := Evaluate(p, ok, Identity{KeyAttested: false}); v != store.VerdictNoncompliant {
		t.Fatal("an unreadable require_tpm_key must read as true")
	}
}

func TestState(t *testing.T) {
	p := policy.Default() // max age 10m
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name        string
		d           store.Device
		want        mamoriv1.Compliance
		wantOffline time.Time
	}{
		{"never reported", store.Device{Verdict: store.VerdictNeverReported}, mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, time.Time{}},
		{"fresh compliant", store.Device{Verdict: store.VerdictCompliant, LastSeen: now.Add(-time.Minute)}, mamoriv1.Compliance_COMPLIANCE_COMPLIANT, time.Time{}},
		{"fresh noncompliant", store.Device{Verdict: store.VerdictNoncompliant, LastSeen: now.Add(-time.Minute)}, mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, time.Time{}},
		{"exactly max age is still online", store.Device{Verdict: store.VerdictCompliant, LastSeen: now.Add(-10 * time.Minute)}, mamoriv1.Compliance_COMPLIANCE_COMPLIANT, time.Time{}},
		{"stale compliant is offline", store.Device{Verdict: store.VerdictCompliant, LastSeen: now.Add(-11 * time.Minute)}, mamoriv1.Compliance_COMPLIANCE_OFFLINE, now.Add(-time.Minute)},
		{"stale noncompliant is offline", store.Device{Verdict: store.VerdictNoncompliant, LastSeen: now.Add(-time.Hour)}, mamoriv1.Compliance_COMPLIANCE_OFFLINE, now.Add(-50 * time.Minute)},
		{"revoked wins", store.Device{Verdict: store.VerdictRevoked, RevokedAt: now, LastSeen: now}, mamoriv1.Compliance_COMPLIANCE_REVOKED, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, off := State(tc.d, p, now)
			if got != tc.want || !off.Equal(tc.wantOffline) {
				t.Fatalf("got %v offline since %v, want %v %v", got, off, tc.want, tc.wantOffline)
			}
			// The store's cut-off must agree with State about OFFLINE.
			storeOffline := !tc.d.LastSeen.IsZero() && tc.d.LastSeen.Before(OfflineBefore(p, now))
			if tc.d.RevokedAt.IsZero() && storeOffline != (got == mamoriv1.Compliance_COMPLIANCE_OFFLINE) {
				t.Fatalf("store cut-off and State disagree")
			}
		})
	}
}
