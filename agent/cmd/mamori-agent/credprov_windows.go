package main

import (
	"context"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"

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
	o := &loginmfa.CredProvOptions{
		Registry: loginmfa.WindowsRegistry{}, DLL: dll, MSISHA256: loginmfa.MSISHA256,
		PipeCheck: func(ctx context.Context) error { return localapi.Check(ctx, localapi.DefaultSocket) },
		Logons:    loginmfa.SecurityLog{},
	}
	// The DLL trusts a pipe served by SYSTEM; an agent running as another
	// account tells it which (see pipeAccess).
	if self := selfSID(); self != "" && self != localapi.SIDSystem {
		o.ServiceSID = self
	}
	return o
}

// pipeAccess is who the agent's pipe serves: SYSTEM (LogonUI), and the
// account the agent itself runs as, when that is not SYSTEM. The service
// runs as LocalSystem, so on Windows this is SYSTEM alone; under wine,
// which has no SYSTEM account, the service runs as the prefix's user —
// the same account as the stand-in — and the installed service is
// tested end to end (internal/e2e). Serving its own account gives nobody
// anything: a process running as the agent's account can already do all
// the agent does.
func pipeAccess() ([]string, string) {
	self := selfSID()
	if self == "" || self == localapi.SIDSystem {
		return nil, "" // localapi's defaults: SYSTEM only
	}
	return []string{localapi.SIDSystem, self}, "D:P(A;;GA;;;SY)(A;;GA;;;" + self + ")"
}

// selfSID is the SID of the account this process runs as, "" if unknown.
func selfSID() string {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return ""
	}
	return u.User.Sid.String()
}

// removeCredProv unregisters the credential provider and filter (the MSI
// runs `mamori-agent credprov-remove` before it removes the DLL).
func removeCredProv() error { return loginmfa.RemoveCredProv(loginmfa.WindowsRegistry{}) }
