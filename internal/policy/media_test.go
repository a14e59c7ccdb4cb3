package policy

import (
	"testing"
)

func TestMediaClasses(t *testing.T) {
	for _, tc := range []struct {
		class, action string
		ok            bool
	}{
		{SettingMediaStorage, "read-only", true},
		{SettingMediaStorage, "block", true},
		{SettingMediaOptical, "allow", true},
		{SettingMediaMTP, "block", true},
		{SettingMediaMTP, "read-only", false},
		{SettingMediaStorage, "off", false},
	} {
		var c MediaClass
		for _, mc := range MediaClasses {
			if mc.Setting == tc.class {
				c = mc
			}
		}
		if got := c.Allows(tc.action); got != tc.ok {
			t.Errorf("%s=%s: allowed %v, want %v", tc.class, tc.action, got, tc.ok)
		}
	}
	if MediaClasses[2].Default() != "block" || MediaClasses[0].Default() != "read-only" {
		t.Error("defaults differ from docs/policy.md")
	}
}

func TestAllowEntries(t *testing.T) {
	got := SplitAllowList("0781:5581:4C53, 0951:1666:*\nbad")
	want := []AllowEntry{{"0781", "5581", "4C53"}, {"0951", "1666", "*"}, {"bad", "", ""}}
	if len(got) != len(want) {
		t.Fatalf("SplitAllowList: %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %v, want %v", i, got[i], want[i])
		}
	}
	if (AllowEntry{"ABCD", "EF01", "X"}).Normal().String() != "abcd:ef01:X" {
		t.Error("Normal")
	}
	for s, ok := range map[string]bool{"0781": true, "abcd": true, "078": false, "07811": false, "zzzz": false} {
		if CheckHex4(s) != ok {
			t.Errorf("CheckHex4(%q) != %v", s, ok)
		}
	}
	for s, ok := range map[string]bool{"4C53": true, "*": true, "a b": false, "a,b": false, "": false, "\u202e": false} {
		if CheckAllowSerial(s) != ok {
			t.Errorf("CheckAllowSerial(%q) != %v", s, ok)
		}
	}
}

func TestMFAFormChecks(t *testing.T) {
	for s, ok := range map[string]bool{"sshd": true, "gdm-password": true, "-x": false, "a b": false} {
		if CheckPAMService(s) != ok {
			t.Errorf("CheckPAMService(%q) != %v", s, ok)
		}
	}
	for v, ok := range map[string]bool{"2027-03-31": true, "2027-03-31T18:00:00+09:00": true, "1998-06-30": false, "2101-01-01": false, "tomorrow": false} {
		if err := CheckGraceUntil(v); (err == nil) != ok {
			t.Errorf("CheckGraceUntil(%q): %v", v, err)
		}
	}
}
