//go:build !linux && !windows

package media

// NewPlatform returns the media control, which reports NOT_APPLICABLE on
// platforms mamori does not enforce on.
func NewPlatform(o Options) Closer { return New(o) }

func platformSessions() Sessions { return noSessions{} }
