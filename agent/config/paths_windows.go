package config

// Default locations on Windows.
const (
	DefaultPath     = `C:\ProgramData\mamori\agent.json`
	DefaultStateDir = `C:\ProgramData\mamori`
)
