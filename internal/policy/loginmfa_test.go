package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestLoginMFASettings(t *testing.T) {
	withSettings := func(s map[string]string) *mamoriv1.Policy {
		p := Default()
		p.Controls[ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: s}
		return p
	}
	ok := []struct {
		name       string
		settings   map[string]string
		methods    []string
		graceUntil time.Time
	}{
		{"defaults: both methods", nil, []string{"totp", "tpm-pin"}, time.Time{}},
		{"both methods, spaces, a repeat", map[string]string{"methods": " tpm-pin, totp,tpm-pin "}, []string{"tpm-pin", "totp"}, time.Time{}},
		{"a date is through the end of that day in JST", map[string]string{"grace_until": "2027-03-31"},
			[]string{"totp", "tpm-pin"}, time.Date(2027, 3, 31, 15, 0, 0, 0, time.UTC)},
		{"an RFC 3339 time", map[string]string{"grace_until": "2027-03-31T18:00:00+09:00"},
			[]string{"totp", "tpm-pin"}, time.Date(2027, 3, 31, 9, 0, 0, 0, time.UTC)},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			p := withSettings(tc.settings)
			if err := Validate(p); err != nil {
				t.Fatal(err)
			}
			got, err := LoginMFASettings(p)
			if err != nil || !slices.Equal(got.Methods, tc.methods) || !got.GraceUntil.Equal(tc.graceUntil) {
				t.Fatalf("got %+v, %v; want methods %v grace %v", got, err, tc.methods, tc.graceUntil)
			}
		})
	}
	bad := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"unknown method", map[string]string{"methods": "totp,sms"}, `"sms" is not a method`},
		{"empty method in a list", map[string]string{"methods": "totp,,"}, "is not a method"},
		{"grace not a date", map[string]string{"grace_until": "next april"}, "write a date like"},
		{"grace day out of range", map[string]string{"grace_until": "2027-02-30"}, "write a date like"},
		{"grace far future", map[string]string{"grace_until": "9999-01-01"}, "between 2000 and 2100"},
		{"hostile value kept short", map[string]string{"grace_until": "\x1b[31m" + strings.Repeat("x", 3000)}, "…"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(withSettings(tc.settings))
			if err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 300 {
				t.Fatalf("got %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestLoginMFASettingsInGroups: a group override is validated like the
// base, so a bad method cannot reach one department's terminals.
func TestLoginMFASettingsInGroups(t *testing.T) {
	p := Default()
	p.Groups = map[string]*mamoriv1.GroupPolicy{"市民課": {Controls: map[string]*mamoriv1.ControlPolicy{
		ControlLoginMFA: {Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"methods": "totp,sms"}},
	}}}
	err := Validate(p)
	if err == nil || !strings.Contains(err.Error(), "group 市民課") || !strings.Contains(err.Error(), `"sms" is not a method`) {
		t.Fatalf("bad method in a group: %v", err)
	}
	p.Groups["市民課"].Controls[ControlLoginMFA].Settings["methods"] = "tpm-pin"
	if err := Validate(p); err != nil {
		t.Fatalf("good group: %v", err)
	}
}

// Who may log in where (issue #14 item 1): users per scope, users.DEVICE
// per terminal, require_attested; malformed and hostile values refused.
func TestLoginMFAUsersSettings(t *testing.T) {
	const dev = "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
	withSettings := func(s map[string]string) *mamoriv1.Policy {
		p := Default()
		p.Controls[ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: s}
		return p
	}
	got, err := LoginMFASettings(withSettings(map[string]string{"users": " suzuki,tanaka ,suzuki", "users." + dev: "sato",
		"require_attested": "true"}))
	if err != nil || got.AllUsers || !slices.Equal(got.Users, []string{"suzuki", "tanaka"}) || !got.RequireAttested ||
		!slices.Equal(got.DeviceUsers[dev], []string{"sato"}) || !got.Allows("tanaka") || got.Allows("sato") {
		t.Fatalf("got %+v, %v", got, err)
	}
	if got, _ := LoginMFASettings(withSettings(nil)); got.AllUsers || len(got.Users) != 0 || got.Allows("tanaka") {
		t.Fatalf("default must be nobody: %+v", got)
	}
	if got, _ := LoginMFASettings(withSettings(map[string]string{"users": "*"})); !got.AllUsers || !got.Allows("anyone") {
		t.Fatalf("star: %+v", got)
	}
	bad := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"upper case name", map[string]string{"users": "Tanaka"}, "is not a login name"},
		{"star in a list", map[string]string{"users": "tanaka,*"}, "is not a login name"},
		{"NUL in a name", map[string]string{"users": "tana\x00ka"}, "is not a login name"},
		{"bidi override", map[string]string{"users": "tanaka\u202e"}, "is not a login name"},
		{"too many", map[string]string{"users": manyUsers(MaxMFAUsers + 1)}, "more than"},
		{"device key not an ID", map[string]string{"users.pc-shimin-07": "tanaka"}, "want users.DEVICE-ID"},
		{"device key upper-case ID", map[string]string{"users." + strings.ToUpper(dev): "tanaka"}, "setting name"},
		{"star for one device", map[string]string{"users." + dev: "*"}, `"*" is allowed only`},
		{"require_attested yes", map[string]string{"require_attested": "yes"}, "use true or false"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(withSettings(tc.settings))
			if err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 400 {
				t.Fatalf("got %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// EffectiveForDevice folds the device's own users into users and drops
// every per-terminal key, so no terminal learns who logs in elsewhere.
func TestEffectiveFoldsDeviceUsers(t *testing.T) {
	const a, b = "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b", "1b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
	p := Default()
	p.Controls[ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{
		"users": "tanaka", "users." + a: "sato,tanaka", "users." + b: "kato"}}
	p.Groups = map[string]*mamoriv1.GroupPolicy{"税務課": {Controls: map[string]*mamoriv1.ControlPolicy{
		ControlLoginMFA: {Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"users." + a: "ito"}}}}}
	if err := Validate(p); err != nil {
		t.Fatal(err)
	}
	check := func(name string, eff *mamoriv1.Policy, want string) {
		t.Helper()
		s := eff.Controls[ControlLoginMFA].GetSettings()
		if s["users"] != want {
			t.Errorf("%s: users %q; want %q", name, s["users"], want)
		}
		for k := range s {
			if strings.HasPrefix(k, "users.") {
				t.Errorf("%s: per-terminal key %s reached the device", name, k)
			}
		}
		if eff.Digest != Digest(eff) {
			t.Errorf("%s: digest not recomputed", name)
		}
	}
	check("device a", EffectiveForDevice(p, "", a, nil, time.Time{}), "sato,tanaka")
	check("device b", EffectiveForDevice(p, "", b, nil, time.Time{}), "kato,tanaka")
	check("other device", EffectiveForDevice(p, "", "2b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b", nil, time.Time{}), "tanaka")
	check("no device", Effective(p, "", nil, time.Time{}), "tanaka")
	check("device a in a group that replaces the control", EffectiveForDevice(p, "税務課", a, nil, time.Time{}), "ito")
	if !HasDeviceUsers(p, "", a) || HasDeviceUsers(p, "", "x") || !HasDeviceUsers(p, "税務課", a) || HasDeviceUsers(p, "税務課", b) {
		t.Error("HasDeviceUsers")
	}
	// The base is not modified.
	if len(p.Controls[ControlLoginMFA].Settings) != 3 {
		t.Error("base modified")
	}
}

func manyUsers(n int) string {
	us := make([]string, n)
	for i := range us {
		us[i] = fmt.Sprintf("u%d", i)
	}
	return strings.Join(us, ",")
}
