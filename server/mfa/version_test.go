package mfa

import (
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// A group's login-mfa override changes the bundle version without a new
// policy version; devices in no group keep the old form.
func TestVersionPerGroup(t *testing.T) {
	base := &mamoriv1.Policy{Version: 4}
	if got := Version(2, base); got != "g2.p4" {
		t.Errorf("no group: %q", got)
	}
	a := &mamoriv1.Policy{Version: 4, Group: "市民課", Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "tanaka, suzuki"}}}}
	b := &mamoriv1.Policy{Version: 4, Group: "税務課", Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "sato"}}}}
	same := &mamoriv1.Policy{Version: 4, Group: "税務課", Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{SettingUsers: "suzuki,tanaka"}}}}
	va, vb := Version(2, a), Version(2, b)
	if va == vb || !strings.HasPrefix(va, "g2.p4.u") || Version(2, same) != va {
		t.Errorf("versions %q %q %q", va, vb, Version(2, same))
	}
}
