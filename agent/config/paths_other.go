//go:build !linux && !windows

package config

// Default locations elsewhere (development only; the agent supports Linux
// and Windows).
const (
	DefaultPath     = "/etc/mamori/agent.json"
	DefaultStateDir = "/var/lib/mamori"
)
