package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func withGroups() *mamoriv1.Policy {
	p := Default()
	p.Controls[ControlMedia] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"storage": "read-only"}}
	p.Groups = map[string]*mamoriv1.GroupPolicy{
		"市民課": {
			Controls:       map[string]*mamoriv1.ControlPolicy{ControlMedia: {Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true, Settings: map[string]string{"storage": "block"}}},
			ReportInterval: durationpb.New(30 * time.Second),
		},
	}
	return p
}

func TestEffective(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	base := withGroups()
	if err := ValidateDocument(base); err != nil {
		t.Fatal(err)
	}
	exc := []Exception{
		{ID: "b", Vendor: "0781", Product: "5581", Serial: "S1", User: "tanaka", Expires: now.Add(time.Hour)},
		{ID: "a", Vendor: "0781", Product: "5581", Serial: "S0", Expires: now.Add(-time.Second)}, // expired
	}
	eff := Effective(base, "市民課", exc, now)
	if eff.Group != "市民課" || len(eff.Groups) != 0 {
		t.Errorf("group %q groups %d", eff.Group, len(eff.Groups))
	}
	m := eff.Controls[ControlMedia]
	if m.Settings["storage"] != "block" || !m.Required {
		t.Errorf("group override not applied: %v", m)
	}
	if got, want := m.Settings[SettingExceptions], "b 0781:5581:S1 2026-11-25T11:00:00Z tanaka"; got != want {
		t.Errorf("exceptions setting %q, want %q", got, want)
	}
	if ReportInterval(eff) != 30*time.Second || MaxReportAge(eff) != 10*time.Minute {
		t.Errorf("durations %v %v", ReportInterval(eff), MaxReportAge(eff))
	}
	if err := Validate(eff); err != nil {
		t.Errorf("effective policy does not validate: %v", err)
	}
	if eff.Digest == "" || eff.Digest != Digest(eff) {
		t.Errorf("digest %q", eff.Digest)
	}
	// Base untouched; another group gets the base; the digest differs.
	if base.Controls[ControlMedia].Settings["storage"] != "read-only" {
		t.Error("Effective modified the base")
	}
	other := Effective(base, "税務課", nil, now)
	if other.Group != "" || other.Controls[ControlMedia].Settings["storage"] != "read-only" || other.Digest == eff.Digest {
		t.Errorf("other group: %v", other)
	}
	// Same inputs, same digest; after expiry the exception is dropped.
	if again := Effective(base, "市民課", exc, now); again.Digest != eff.Digest {
		t.Error("digest not stable")
	}
	if later := Effective(base, "市民課", exc, now.Add(2*time.Hour)); later.Digest == eff.Digest || len(later.Exceptions) != 0 {
		t.Error("expired exception still in the effective policy")
	}
	back, err := ParseExceptions(m.Settings[SettingExceptions])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(exc[:1], back); diff != "" {
		t.Errorf("round trip (-want +got)\n%s", diff)
	}
}

func TestValidateGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *mamoriv1.Policy)
		want string
	}{
		{"bad group name", func(p *mamoriv1.Policy) { p.Groups[" x"] = &mamoriv1.GroupPolicy{} }, "leading or trailing"},
		{"bad control in group", func(p *mamoriv1.Policy) {
			p.Groups["市民課"].Controls["Bad"] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}
		}, "group 市民課: control name"},
		{"group max age too short", func(p *mamoriv1.Policy) { p.Groups["市民課"].MaxReportAge = durationpb.New(40 * time.Second) }, "at least twice"},
		{"exceptions set by hand", func(p *mamoriv1.Policy) {
			p.Controls[ControlMedia].Settings[SettingExceptions] = "x"
		}, "filled by the server"},
		{"digest set by hand", func(p *mamoriv1.Policy) { p.Digest = "00" }, "set by the server"},
		{"too many groups", func(p *mamoriv1.Policy) {
			for i := range MaxGroups + 1 {
				p.Groups[fmt.Sprintf("g%d", i)] = &mamoriv1.GroupPolicy{}
			}
		}, "at most 256"},
		{"group exceptions by hand", func(p *mamoriv1.Policy) {
			p.Groups["市民課"].Controls[ControlMedia].Settings[SettingExceptions] = "x"
		}, "group 市民課: media setting exceptions"},
		{"oversized group setting", func(p *mamoriv1.Policy) {
			p.Groups["市民課"].Controls[ControlMedia].Settings["allow"] = strings.Repeat("a", MaxSettingLen+1)
		}, "at most 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := withGroups()
			tc.mod(p)
			err := ValidateDocument(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseExceptionsRefuses(t *testing.T) {
	for _, v := range []string{
		"a 0781:5581:* 2026-11-25T11:00:00Z",
		"a 0781:5581:S1 tomorrow",
		"a 0781:5581:S1 2026-11-25T11:00:00Z <script>",
		"A_B 0781:5581:S1 2026-11-25T11:00:00Z",
		"a 0781:5581:S1",
		// Found by FuzzParseExceptions: Go's zero time parsed as an expiry.
		"0 0000:0000:0 0001-01-01T0:00:00Z",
		"a 0781:5581:S1 0001-01-01T00:00:00Z",
		"a 0781:5581:S1 1999-12-31T23:59:59Z",
		"a 0781:5581:S1 2000-01-01T08:00:00+09:00",
	} {
		if _, err := ParseExceptions(v); err == nil {
			t.Errorf("accepted %q", v)
		}
	}
}

// BenchmarkEffective is the per-report cost the server adds: one
// effective policy (clone, group override, exceptions, digest).
func BenchmarkEffective(b *testing.B) {
	base := withGroups()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	exc := []Exception{{ID: "6f1c0e8e-0000-4000-8000-000000000001", Vendor: "0781", Product: "5581", Serial: "4C530001231120115142", Expires: now.Add(time.Hour)}}
	b.ReportAllocs()
	for b.Loop() {
		Effective(base, "市民課", exc, now)
	}
}
