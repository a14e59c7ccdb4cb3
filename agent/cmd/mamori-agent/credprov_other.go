//go:build !windows

package main

import "github.com/mamori-dev/mamori/agent/loginmfa"

// credProvOptions: PAM, not a credential provider, outside Windows.
func credProvOptions() *loginmfa.CredProvOptions { return nil }
