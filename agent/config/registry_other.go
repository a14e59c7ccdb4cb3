//go:build !windows

package config

// readRegistry is empty off Windows: the registry layer exists only there.
func readRegistry() (map[string]string, error) { return nil, nil }

// forgetRegistryToken: no registry off Windows.
func forgetRegistryToken() error { return nil }
