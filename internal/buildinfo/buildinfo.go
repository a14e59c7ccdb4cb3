// Package buildinfo holds the version stamped into both binaries.
package buildinfo

// Version is set at link time: -ldflags "-X github.com/mamori-dev/mamori/internal/buildinfo.Version=v1.2.3".
var Version = "dev"
