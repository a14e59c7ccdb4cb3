package cli

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/agent/config"
)

func TestCatalogComplete(t *testing.T) {
	verbs := regexp.MustCompile(`%(\[\d+\])?[a-zA-Z]`)
	seen := map[ID]bool{}
	for _, m := range messages() {
		if seen[m.ID] || m.En == "" || m.Ja == "" {
			t.Errorf("%s: duplicate or missing text", m.ID)
		}
		seen[m.ID] = true
		en, ja := verbs.FindAllString(m.En, -1), verbs.FindAllString(m.Ja, -1)
		slices.Sort(en)
		slices.Sort(ja)
		if !slices.Equal(en, ja) {
			t.Errorf("%s: verbs differ: en %v ja %v", m.ID, en, ja)
		}
	}
}

func TestLang(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want Lang
	}{
		{map[string]string{"LANG": "ja_JP.UTF-8"}, Japanese},
		{map[string]string{"LANG": "en_US.UTF-8"}, English},
		{map[string]string{"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, English},
		{map[string]string{}, English},
	}
	for _, tt := range tests {
		if got := LangFromEnv(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%v: %v", tt.env, got)
		}
	}
	if s := NewPrinter(Japanese).Sprintf(MsgUsage, "a", "b"); !strings.Contains(s, "使い方") {
		t.Error("Japanese usage missing")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Invocation
		wantErr bool
	}{
		{"none is help", nil, Invocation{Command: "help", ConfigPath: config.DefaultPath}, false},
		{"enroll", []string{"enroll", "--server", "a:1,b:2", "--token", "mme_x", "--ca-fingerprint", "ab", "--config", "/c.json"},
			Invocation{Command: "enroll", ConfigPath: "/c.json", ConfigGiven: true,
				Overrides: config.Overrides{Servers: []string{"a:1", "b:2"}, Token: "mme_x", CAFingerprint: "ab"}}, false},
		{"state dir", []string{"status", "--state-dir", "/s"}, Invocation{Command: "status", ConfigPath: config.DefaultPath,
			Overrides: config.Overrides{StateDir: "/s"}}, false},
		{"unknown", []string{"frobnicate"}, Invocation{Command: "frobnicate", ConfigPath: config.DefaultPath}, true},
		{"token not for install", []string{"install", "--token", "x"}, Invocation{}, true},
		{"stray argument", []string{"run", "extra"}, Invocation{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil || tt.want.Command != "" {
				if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
					t.Errorf("(-want +got)\n%s", diff)
				}
			}
		})
	}
}
