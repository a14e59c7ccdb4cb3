package mfa

import (
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestPrivilegedReason(t *testing.T) {
	p := policy.Default()
	p.Controls[policy.ControlLoginMFA].Settings = map[string]string{SettingUsers: "*", policy.SettingMFAPrivilegedUsers: "sato, ito"}
	p.Groups = map[string]*mamoriv1.GroupPolicy{"市民課": {Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlLoginMFA: {Settings: map[string]string{policy.SettingMFAPrivilegedUsers: "kato"}}}}}
	facts := map[string][]string{"dev-b": {"suzuki", "root"}, "dev-a": {"suzuki"}, "dev-c": {"Admin1"}}
	for _, c := range []struct{ user, want string }{
		{"root", "name root"},
		{"Administrator", "name Administrator"},
		{"sato", "policy privileged_users"},
		{"ito", "policy privileged_users"},
		{"kato", "policy privileged_users"},
		{"suzuki", "administrator on dev-a, dev-b"},
		{"admin1", "administrator on dev-c"},
		{"tanaka", ""},
		{"roo", ""},
	} {
		if got := PrivilegedReason(c.user, p, facts); got != c.want {
			t.Errorf("%s: %q, want %q", c.user, got, c.want)
		}
	}
	many := map[string][]string{}
	for _, d := range []string{"d1", "d2", "d3", "d4", "d5"} {
		many[d] = []string{"x"}
	}
	if got := PrivilegedReason("x", nil, many); got != "administrator on d1, d2, d3 and 2 more" {
		t.Errorf("many devices: %q", got)
	}
}

// TestBundleBoundTempCodes: a code bound to a device goes into that
// device's bundle only, with its binding; an unbound one goes everywhere.
func TestBundleBoundTempCodes(t *testing.T) {
	k, err := NewKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var d BundleData
	for _, dev := range []string{"dev-1", "dev-2", ""} {
		_, c, err := NewTempCode("root", "op", now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c.DeviceID = dev
		d.TempCodes = append(d.TempCodes, c)
	}
	p := policy.Default()
	p.Controls[policy.ControlLoginMFA].Settings = map[string]string{SettingUsers: "*"}
	dk, _ := mfabundle.GenerateKey()
	sb, err := k.Bundle(d, p, "g1.p1", "dev-1", mfabundle.PublicKeyBytes(dk), now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mfabundle.Open(dk, "dev-1", sb.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range b.TempCodes {
		got = append(got, c.Id+"@"+c.DeviceId)
	}
	want := []string{d.TempCodes[0].ID + "@dev-1", d.TempCodes[2].ID + "@"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("dev-1's bundle: %v, want %v", got, want)
	}
}
