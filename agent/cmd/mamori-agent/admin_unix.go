//go:build !windows

package main

import (
	"os"

	"github.com/mamori-dev/mamori/agent/config"
)

func isAdmin() bool { return os.Geteuid() == 0 }

// envFile is the packages' environment file the token is removed from.
func envFile() string { return config.EnvFile }
