package policy

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// A policy file an officer edits by hand goes through protojson and
// Validate; neither may panic, and what Validate accepts is bounded.
func FuzzValidate(f *testing.F) {
	b, _ := protojson.Marshal(Default())
	f.Add(b)
	f.Add([]byte(`{"controls":{"media":{"mode":"MODE_ENFORCE","settings":{"usb":"read-only"}}},"report_interval":"5s","max_report_age":"10s"}`))
	f.Add([]byte(`{"report_interval":"-1s"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p mamoriv1.Policy
		if protojson.Unmarshal(b, &p) != nil {
			return
		}
		if Validate(&p) != nil {
			return
		}
		if len(p.Controls) > MaxControls || ReportInterval(&p) < MinReportInterval || ReportInterval(&p) > MaxReportInterval {
			t.Fatalf("accepted an out-of-bounds policy: %v", &p)
		}
	})
}

// The media `exceptions` setting reaches the agent from the server; the
// agent parses it strictly. What it accepts must format back to an
// equivalent setting and stay within the bounds.
func FuzzParseExceptions(f *testing.F) {
	f.Add("6f1c0e8e-0000-4000-8000-000000000001 0781:5581:4C530001231120115142 2026-11-25T11:00:00Z tanaka")
	f.Add("a 0781:5581:S1 2026-11-25T11:00:00+09:00\nb 054c:0243:X 2027-01-01T00:00:00Z")
	f.Add("a 0781:5581:* 2026-11-25T11:00:00Z")
	f.Fuzz(func(t *testing.T, v string) {
		es, err := ParseExceptions(v)
		if err != nil {
			return
		}
		if len(es) > MaxExceptionsPerDevice {
			t.Fatalf("%d exceptions accepted", len(es))
		}
		again, err := ParseExceptions(FormatExceptions(es))
		if err != nil || len(again) != len(es) {
			t.Fatalf("formatted setting does not parse back: %v (%d vs %d)", err, len(again), len(es))
		}
		for _, e := range es {
			if e.Serial == "*" || e.ID == "" || e.Expires.IsZero() {
				t.Fatalf("accepted %+v", e)
			}
		}
	})
}

// The login-mfa users settings decide whose secrets a terminal receives:
// what LoginMFASettings accepts names only login names, and the effective
// policy of a device never carries a per-terminal key nor a name that the
// settings did not give that device.
func FuzzLoginMFAUsers(f *testing.F) {
	const dev = "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
	f.Add("tanaka,suzuki", "sato", "*")
	f.Add("*", "*", "true")
	f.Add(" a , a ,", "b\x00", "false")
	f.Add("", "ta\u202enaka", "")
	f.Fuzz(func(t *testing.T, users, own, attested string) {
		p := Default()
		p.Controls[ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR,
			Settings: map[string]string{"users": users, "users." + dev: own, "users.1b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b": "other",
				"require_attested": attested}}
		l, err := LoginMFASettings(p)
		if err != nil {
			return
		}
		for _, u := range append(append([]string{}, l.Users...), l.DeviceUsers[dev]...) {
			if !loginNameRE.MatchString(u) {
				t.Fatalf("accepted user %q", u)
			}
		}
		eff := EffectiveForDevice(p, "", dev, nil, time.Time{})
		got, err := LoginMFASettings(eff)
		if err != nil {
			t.Fatalf("effective settings do not parse: %v", err)
		}
		if len(got.DeviceUsers) != 0 {
			t.Fatalf("per-terminal keys reached the device: %v", got.DeviceUsers)
		}
		for _, u := range got.Users {
			if !l.Allows(u) && !slices.Contains(l.DeviceUsers[dev], u) {
				t.Fatalf("effective users name %q, given to no one here", u)
			}
		}
		if got.AllUsers != l.AllUsers {
			t.Fatalf("* changed: %v → %v", l.AllUsers, got.AllUsers)
		}
	})
}
