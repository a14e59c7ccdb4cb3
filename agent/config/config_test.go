package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fp = "b7a3c2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3"

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolvePrecedence(t *testing.T) {
	file := write(t, `{"servers":["file:1"],"token":"mme_file","ca_fingerprint":"`+fp+`","state_dir":"/file"}`)
	tests := []struct {
		name  string
		env   map[string]string
		flags Overrides
		want  Config
	}{
		{"file only", nil, Overrides{}, Config{StateDir: "/file", Servers: []string{"file:1"}, Token: "mme_file", CAFingerprint: fp, LogLevel: "info"}},
		{"env over file", map[string]string{EnvServer: "env:1, env:2", EnvToken: "mme_env", EnvStateDir: "/env"}, Overrides{},
			Config{StateDir: "/env", Servers: []string{"env:1", "env:2"}, Token: "mme_env", CAFingerprint: fp, LogLevel: "info"}},
		{"flags over env", map[string]string{EnvServer: "env:1", EnvToken: "mme_env"},
			Overrides{Servers: []string{"flag:1"}, Token: "mme_flag", StateDir: "/flag", CAFingerprint: strings.ToUpper(fp)},
			Config{StateDir: "/flag", Servers: []string{"flag:1"}, Token: "mme_flag", CAFingerprint: fp, LogLevel: "info"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(file, false, env(tt.env), tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestResolveMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	if _, err := Resolve(missing, true, env(nil), Overrides{}); err != nil {
		t.Errorf("optional missing file: %v", err)
	}
	if _, err := Resolve(missing, false, env(nil), Overrides{}); err == nil {
		t.Error("explicit missing file accepted")
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"huge", `{"log_level":"` + strings.Repeat("a", MaxFileBytes) + `"}`, "larger than 64 KiB"},
		{"wrong type", `{"servers":"a:1"}`, `field "servers" must be a list, not a JSON string`},
		{"wrong type number", `{"state_dir":5}`, `field "state_dir" must be a string, not a JSON number`},
		{"unknown field", `{"sever":"a:1"}`, `unknown field "sever"`},
		{"syntax", `{"servers":[}`, "not valid JSON"},
		{"two values", `{} {}`, "one object"},
		{"bad fingerprint", `{"ca_fingerprint":"abc"}`, "ca_fingerprint: CA fingerprint must be 64 hex digits"},
		{"bad server", `{"server":"nohost"}`, "give it as host:port"},
		{"bad port", `{"servers":["h:99999"]}`, "port must be a number"},
		{"bad level", `{"log_level":"loud"}`, "use debug, info, warn or error"},
		{"token with space", `{"token":"a b"}`, "token is malformed"},
		{"empty state dir", `{"state_dir":""}`, "state_dir is empty"},
		{"binary", "\x00\x01\xff", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(write(t, tt.file), false, env(nil), Overrides{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSecretRedacted(t *testing.T) {
	c := Config{Token: "mme_supersecret"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", c.Token, "cfg", c)
	for _, s := range []string{buf.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Token)} {
		if strings.Contains(s, "supersecret") {
			t.Errorf("token leaked: %s", s)
		}
	}
	if c.Token.Reveal() != "mme_supersecret" {
		t.Error("Reveal")
	}
}
