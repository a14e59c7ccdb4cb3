package media

import "github.com/mamori-dev/mamori/agent/media/regpolicy"

// NewPlatform returns this platform's media control: on Windows the
// removable-storage registry policy, read back and re-applied every round.
func NewPlatform(o Options) Closer {
	return NewRegistry(RegistryOptions{Store: regpolicy.Registry{}, Emitter: o.Emitter, Log: o.Log})
}

// Windows does not honour allow-lists or exceptions (see docs/windows.md).
func platformSessions() Sessions { return noSessions{} }
