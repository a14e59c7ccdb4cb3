package media

// NewPlatform returns this platform's media control: on Linux the uevent
// and BLKROSET control.
func NewPlatform(o Options) Closer { return New(o) }

func platformSessions() Sessions { return UtmpSessions{Path: "/run/utmp"} }
