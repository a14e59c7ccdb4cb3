package mfa

import (
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// The bundle version names the users a device may receive, for every
// device (issue #14: per-terminal users keep the policy version too), so
// moving a device or naming users for it sends it a new bundle.
func TestVersionNamesUsers(t *testing.T) {
	base := &mamoriv1.Policy{Version: 4}
	if got := Version(2, base); !strings.HasPrefix(got, "g2.p4.u") {
		t.Errorf("no group: %q", got)
	}
	a := &mamoriv1.Policy{Version: 4, Group: "市民課", Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "tanaka, suzuki"}}}}
	b := &mamoriv1.Policy{Version: 4, Group: "税務課", Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "sato"}}}}
	same := &mamoriv1.Policy{Version: 4, Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "suzuki,tanaka"}}}}
	all := &mamoriv1.Policy{Version: 4, Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "*"}}}}
	va, vb := Version(2, a), Version(2, b)
	if va == vb || !strings.HasPrefix(va, "g2.p4.u") || Version(2, same) != va || Version(2, all) == va || Version(2, all) == Version(2, base) {
		t.Errorf("versions %q %q %q %q", va, vb, Version(2, same), Version(2, all))
	}
}

// Who may receive what (issue #14 item 1): nobody by default, no control
// no bundle, require_attested.
func TestAccess(t *testing.T) {
	ctl := func(s map[string]string) *mamoriv1.Policy {
		return &mamoriv1.Policy{Controls: map[string]*mamoriv1.ControlPolicy{policy.ControlLoginMFA: {Settings: s}}}
	}
	for _, tc := range []struct {
		name     string
		p        *mamoriv1.Policy
		attested bool
		refusal  string
		allows   []string
		refuses  []string
	}{
		{"no control", &mamoriv1.Policy{}, true, RefusedNoControl, nil, []string{"tanaka"}},
		{"control, users unset: nobody", ctl(nil), true, RefusedNoUsers, nil, []string{"tanaka"}},
		{"users empty: nobody", ctl(map[string]string{"users": " "}), true, RefusedNoUsers, nil, []string{"tanaka"}},
		{"named", ctl(map[string]string{"users": "tanaka,suzuki"}), false, "", []string{"tanaka", "suzuki"}, []string{"sato", ""}},
		{"star", ctl(map[string]string{"users": "*"}), false, "", []string{"tanaka", "sato"}, nil},
		{"attested required, not attested", ctl(map[string]string{"users": "*", "require_attested": "true"}), false,
			RefusedNotAttested, []string{"tanaka"}, nil},
		{"attested required, attested", ctl(map[string]string{"users": "*", "require_attested": "true"}), true, "", []string{"tanaka"}, nil},
		{"bad settings give nothing", ctl(map[string]string{"users": "Tanaka"}), true, RefusedBadSettings, nil, []string{"Tanaka", "tanaka"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := AccessOf(tc.p)
			if got := a.Refusal(tc.attested); got != tc.refusal {
				t.Errorf("refusal %q; want %q", got, tc.refusal)
			}
			for _, u := range tc.allows {
				if !a.Allows(u) {
					t.Errorf("%s refused", u)
				}
			}
			for _, u := range tc.refuses {
				if a.Allows(u) {
					t.Errorf("%s allowed", u)
				}
			}
		})
	}
}
