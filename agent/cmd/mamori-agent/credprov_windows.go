package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/mamori-dev/mamori/agent/credprov"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
)

// credProvOptions: on Windows the login-mfa control switches mamori-cp.dll
// (installed next to the agent by the MSI) on and off.
func credProvOptions() *loginmfa.CredProvOptions {
	dll := credprov.DLLName
	if exe, err := os.Executable(); err == nil {
		dll = filepath.Join(filepath.Dir(exe), credprov.DLLName)
	}
	return &loginmfa.CredProvOptions{
		Registry: loginmfa.WindowsRegistry{}, DLL: dll, MSISHA256: loginmfa.MSISHA256,
		PipeCheck: func(ctx context.Context) error { return localapi.Check(ctx, localapi.DefaultSocket) },
	}
}

// removeCredProv unregisters the credential provider and filter (the MSI
// runs `mamori-agent credprov-remove` before it removes the DLL).
func removeCredProv() error { return loginmfa.RemoveCredProv(loginmfa.WindowsRegistry{}) }
