package policy

import (
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
