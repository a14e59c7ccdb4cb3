package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/internal/i18n"
)

// Every ID main uses must be in the shared catalog (which checks both
// languages and their verbs itself).
func TestMessagesInCatalog(t *testing.T) {
	for _, id := range []i18n.ID{MsgUnknownCommand} {
		if _, ok := i18n.Default().Lookup(id); !ok {
			t.Errorf("%s is not in internal/i18n", id)
		}
	}
	if s := i18n.NewPrinter(i18n.Japanese).Sprintf(MsgUsage, "a", "b"); !strings.Contains(s, "使い方") {
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
		{"mfa pin-enroll", []string{"mfa", "pin-enroll", "tanaka", "--state-dir", "/s"}, Invocation{Command: "mfa pin-enroll", ConfigPath: config.DefaultPath,
			User: "tanaka", Overrides: config.Overrides{StateDir: "/s"}}, false},
		{"mfa pin-remove", []string{"mfa", "pin-remove", "tanaka"}, Invocation{Command: "mfa pin-remove", ConfigPath: config.DefaultPath, User: "tanaka"}, false},
		{"mfa without user", []string{"mfa", "pin-enroll"}, Invocation{}, true},
		{"mfa unknown", []string{"mfa", "frob", "tanaka"}, Invocation{}, true},
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
