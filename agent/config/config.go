// Package config is the agent's configuration: what main loads from a file,
// overlays with the environment and flags, and hands to the daemon.
//
// # File format
//
// The file is one JSON object; every field is optional and unknown fields
// are refused (a typo must not silently fall back to a default):
//
//	{
//	  "state_dir":      "/var/lib/mamori",
//	  "servers":        ["mamori.example.lg.jp:8443", "mamori2.example.lg.jp:8443"],
//	  "token":          "mme_…",
//	  "ca_fingerprint": "sha256:AB:CD:…",
//	  "log_file":       "/var/log/mamori/agent.log",
//	  "log_level":      "info"
//	}
//
// "server" (one address) is accepted as a short form of "servers".
//
// # Precedence
//
// flags > environment (MAMORI_SERVER, MAMORI_TOKEN, MAMORI_CA_FINGERPRINT,
// MAMORI_STATE_DIR, MAMORI_LOG_LEVEL) > registry (Windows only: what the
// MSI wrote under HKLM\SOFTWARE\mamori, see registry.go) > file >
// DefaultConfig. MAMORI_SERVER
// may list several addresses separated by commas.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/mamori-dev/mamori/internal/pki"
)

// MaxFileBytes bounds the config file; anything larger is refused unread.
const MaxFileBytes = 64 << 10

// MaxServers bounds the server list.
const MaxServers = 16

// Environment variable names.
const (
	EnvServer        = "MAMORI_SERVER"
	EnvToken         = "MAMORI_TOKEN"
	EnvCAFingerprint = "MAMORI_CA_FINGERPRINT"
	EnvStateDir      = "MAMORI_STATE_DIR"
	EnvLogLevel      = "MAMORI_LOG_LEVEL"
)

// Secret is a string that never shows itself in logs, fmt output or JSON
// written back out. Use Reveal where the value is really needed.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// GoString redacts (%#v).
func (s Secret) GoString() string { return s.String() }

// LogValue redacts for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts, so a config dump never carries the token.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Config is the agent's configuration.
type Config struct {
	// StateDir holds the key, certificates, device record and cached policy.
	StateDir string `json:"state_dir"`
	// Servers are "host:port" addresses, tried in order.
	Servers []string `json:"servers"`
	// Server is the one-address short form of Servers (file only).
	Server string `json:"server,omitempty"`
	// Token is the enrolment token; only needed until the agent is enrolled.
	Token Secret `json:"token"`
	// CAFingerprint is the SHA-256 of the server CA, pinned on first contact.
	CAFingerprint string `json:"ca_fingerprint"`
	// LogFile, when set, receives the log instead of stderr.
	LogFile string `json:"log_file"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// DefaultConfig returns the defaults for this OS.
func DefaultConfig() Config {
	return Config{StateDir: DefaultStateDir, LogLevel: "info"}
}

// CanEnroll reports whether the config carries all three things enrolment
// needs.
func (c Config) CanEnroll() bool {
	return len(c.Servers) > 0 && c.Token != "" && c.CAFingerprint != ""
}

// Validate checks the config. Every problem is reported, each saying what
// to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir is empty: set it or leave it out for the default"))
	}
	if len(c.Servers) > MaxServers {
		errs = append(errs, fmt.Errorf("%d servers listed; at most %d", len(c.Servers), MaxServers))
	}
	for _, s := range c.Servers {
		if err := CheckServer(s); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CAFingerprint != "" {
		fp, err := pki.NormalizeFingerprint(c.CAFingerprint)
		if err != nil {
			errs = append(errs, fmt.Errorf("ca_fingerprint: %w (copy it from the enrolment token screen)", err))
		} else {
			c.CAFingerprint = fp
		}
	}
	if len(c.Token) > 256 || strings.ContainsAny(string(c.Token), " \t\r\n") {
		errs = append(errs, errors.New("token is malformed: copy the enrolment token again, without spaces"))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckServer checks one "host:port" address.
func CheckServer(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("server %q: give it as host:port, e.g. mamori.example.lg.jp:8443", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("server %q: port must be a number from 1 to 65535", s)
	}
	return nil
}

// ParseLevel turns a level name into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level %q: use debug, info, warn or error", s)
}

// Load reads path over DefaultConfig. A missing file is not an error when
// optional is true (the default path may not exist on a terminal enrolled
// by flags). The result is not validated and has no environment applied.
func Load(path string, optional bool) (Config, error) {
	c := DefaultConfig()
	f, err := os.Open(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := Parse(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse reads a config file's bytes over c.
func Parse(b []byte, c *Config) error {
	if len(b) > MaxFileBytes {
		return fmt.Errorf("file is larger than %d KiB; it is not an agent config", MaxFileBytes>>10)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil // an empty file is an empty config
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q must be a %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("not valid JSON at byte %d: %v", se.Offset, err)
		}
		return fmt.Errorf("%w (see the agent's config documentation for the fields)", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value: the file must hold one object")
	}
	if c.Server != "" {
		c.Servers = append([]string{c.Server}, c.Servers...)
		c.Server = ""
	}
	return nil
}

func jsonKind(k string) string {
	if k == "slice" {
		return "list"
	}
	return k
}

// ApplyEnv overlays the environment on c. getenv is os.Getenv in
// production.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := strings.TrimSpace(getenv(EnvServer)); v != "" {
		c.Servers = SplitServers(v)
	}
	if v := strings.TrimSpace(getenv(EnvToken)); v != "" {
		c.Token = Secret(v)
	}
	if v := strings.TrimSpace(getenv(EnvCAFingerprint)); v != "" {
		c.CAFingerprint = v
	}
	if v := strings.TrimSpace(getenv(EnvStateDir)); v != "" {
		c.StateDir = v
	}
	if v := strings.TrimSpace(getenv(EnvLogLevel)); v != "" {
		c.LogLevel = v
	}
}

// SplitServers splits a comma-separated server list.
func SplitServers(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Overrides are values given on the command line; empty fields leave the
// config as it is.
type Overrides struct {
	StateDir      string
	Servers       []string
	Token         Secret
	CAFingerprint string
}

// Resolve builds the effective config: DefaultConfig, then the file at path
// (optional: a missing file is fine), then the registry (Windows), then the
// environment, then the flags,
// then Validate.
func Resolve(path string, optional bool, getenv func(string) string, o Overrides) (Config, error) {
	c, err := Load(path, optional)
	if err != nil {
		return c, err
	}
	reg, err := readRegistry()
	if err != nil {
		return c, err
	}
	c.applyRegistry(reg)
	c.ApplyEnv(getenv)
	if o.StateDir != "" {
		c.StateDir = o.StateDir
	}
	if len(o.Servers) > 0 {
		c.Servers = o.Servers
	}
	if o.Token != "" {
		c.Token = o.Token
	}
	if o.CAFingerprint != "" {
		c.CAFingerprint = o.CAFingerprint
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
