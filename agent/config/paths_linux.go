package config

// Default locations on Linux.
const (
	DefaultPath     = "/etc/mamori/agent.json"
	DefaultStateDir = "/var/lib/mamori"
)
