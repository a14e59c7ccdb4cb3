package policy

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Validate(Default()); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRefusesHostilePolicies(t *testing.T) {
	many := map[string]*mamoriv1.ControlPolicy{}
	for i := range MaxControls + 1 {
		many["c"+strings.Repeat("x", i%20)+string(rune('a'+i%26))+string(rune('a'+i/26))] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}
	}
	cases := []struct {
		name   string
		mutate func(p *mamoriv1.Policy)
		want   string
	}{
		{"nil control", func(p *mamoriv1.Policy) { p.Controls["media"] = nil }, "empty"},
		{"bad name", func(p *mamoriv1.Policy) { p.Controls["../etc"] = &mamoriv1.ControlPolicy{Mode: 1} }, "control name"},
		{"upper-case name", func(p *mamoriv1.Policy) { p.Controls["Media"] = &mamoriv1.ControlPolicy{Mode: 1} }, "control name"},
		{"no mode", func(p *mamoriv1.Policy) { p.Controls["media"] = &mamoriv1.ControlPolicy{} }, "mode"},
		{"unknown mode", func(p *mamoriv1.Policy) { p.Controls["media"] = &mamoriv1.ControlPolicy{Mode: 7} }, "mode"},
		{"too many controls", func(p *mamoriv1.Policy) { p.Controls = many }, "at most"},
		{"bad setting key", func(p *mamoriv1.Policy) {
			p.Controls["media"] = &mamoriv1.ControlPolicy{Mode: 1, Settings: map[string]string{"a b": "x"}}
		}, "setting name"},
		{"huge setting", func(p *mamoriv1.Policy) {
			p.Controls["media"] = &mamoriv1.ControlPolicy{Mode: 1, Settings: map[string]string{"x": strings.Repeat("a", MaxSettingLen+1)}}
		}, "at most"},
		{"no interval", func(p *mamoriv1.Policy) { p.ReportInterval = nil }, "report_interval"},
		{"interval too short", func(p *mamoriv1.Policy) { p.ReportInterval = durationpb.New(time.Millisecond) }, "between"},
		{"negative interval", func(p *mamoriv1.Policy) { p.ReportInterval = durationpb.New(-time.Minute) }, "between"},
		{"invalid duration", func(p *mamoriv1.Policy) { p.ReportInterval = &durationpb.Duration{Seconds: 1, Nanos: -1} }, "report_interval"},
		{"max age below twice interval", func(p *mamoriv1.Policy) { p.MaxReportAge = durationpb.New(90 * time.Second) }, "twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Default()
			tc.mutate(p)
			err := Validate(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if Validate(nil) == nil {
		t.Fatal("nil policy accepted")
	}
}

func TestIntervalsFallBack(t *testing.T) {
	if ReportInterval(nil) != time.Minute || MaxReportAge(nil) != 10*time.Minute {
		t.Fatal("fallbacks changed")
	}
	p := Default()
	p.ReportInterval = durationpb.New(30 * time.Second)
	if ReportInterval(p) != 30*time.Second {
		t.Fatal("interval not read")
	}
}
