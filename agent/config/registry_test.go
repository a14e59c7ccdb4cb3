package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestApplyRegistry(t *testing.T) {
	tests := []struct {
		name string
		reg  map[string]string
		want Config
	}{
		{"empty layer", nil, Config{Servers: []string{"file:1"}, Token: "file-token"}},
		{"msiexec wrote empty properties", map[string]string{RegistryServer: "", RegistryToken: " ", RegistryCAFingerprint: ""},
			Config{Servers: []string{"file:1"}, Token: "file-token"}},
		{"values override the file", map[string]string{RegistryServer: "a:1, b:2", RegistryToken: "mme_x", RegistryCAFingerprint: "sha256:AB"},
			Config{Servers: []string{"a:1", "b:2"}, Token: "mme_x", CAFingerprint: "sha256:AB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Servers: []string{"file:1"}, Token: "file-token"}
			c.applyRegistry(tt.reg)
			if d := cmp.Diff(tt.want, c); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
