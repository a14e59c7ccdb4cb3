package state

import "github.com/mamori-dev/mamori/agent/config"

// DefaultDir is /var/lib/mamori on Linux and C:\ProgramData\mamori on
// Windows.
const DefaultDir = config.DefaultStateDir
