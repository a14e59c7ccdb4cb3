//go:build !windows

package main

import (
	"os"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/localapi"
)

func isAdmin() bool { return os.Geteuid() == 0 }

// envFile is the packages' environment file the token is removed from.
func envFile() string { return config.EnvFile }

// ownUser lets a non-root PAM caller verify its own user's code.
func ownUser() func(string) (uint32, bool) { return localapi.LookupUID }
