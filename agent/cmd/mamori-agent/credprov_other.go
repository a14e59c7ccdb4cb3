//go:build !windows

package main

import (
	"errors"

	"github.com/mamori-dev/mamori/agent/loginmfa"
)

// credProvOptions: PAM, not a credential provider, outside Windows.
func credProvOptions() *loginmfa.CredProvOptions { return nil }

// removeCredProv: there is no credential provider outside Windows.
func removeCredProv() error { return errors.ErrUnsupported }

// pipeAccess: the Linux socket is root-only (localapi's default).
func pipeAccess() ([]string, string) { return nil, "" }
