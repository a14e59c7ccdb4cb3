package config

import "strings"

// The Windows installer (MSI) writes its SERVER, TOKEN and CA_FINGERPRINT
// properties as REG_SZ values under HKLM\SOFTWARE\mamori, because wixl
// cannot write files. On Windows they are a config layer between the file
// and the environment: flags > environment > registry > file > defaults.
// Elsewhere the layer is empty.
const (
	RegistryKey           = `SOFTWARE\mamori`
	RegistryServer        = "Server"
	RegistryToken         = "Token"
	RegistryCAFingerprint = "CAFingerprint"
)

// applyRegistry overlays the registry values read (name → string) on c.
// Empty values are ignored: msiexec writes "" for a property not given.
func (c *Config) applyRegistry(v map[string]string) {
	if s := strings.TrimSpace(v[RegistryServer]); s != "" {
		c.Servers = SplitServers(s)
	}
	if s := strings.TrimSpace(v[RegistryToken]); s != "" {
		c.Token = Secret(s)
	}
	if s := strings.TrimSpace(v[RegistryCAFingerprint]); s != "" {
		c.CAFingerprint = s
	}
}
