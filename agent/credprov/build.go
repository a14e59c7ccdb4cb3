// Package credprov holds mamori-cp.dll, the Windows credential provider
// and filter (C, no Go runtime inside LogonUI: src/provider.c, cpcore.c,
// cpdefs.h, and argon2id.c, our own BLAKE2b and argon2id for the
// break-glass check while the agent is down), and what builds and tests it from Go. The agent's side of
// the conversation is agent/localapi's named pipe; the login-mfa control
// (agent/loginmfa) registers the DLL. docs/windows.md has the whole
// picture.
package credprov

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// DLLName is the provider's file name, as the MSI installs it.
const DLLName = "mamori-cp.dll"

// CC is Debian's mingw-w64 C compiler (gcc-mingw-w64-x86-64).
const CC = "x86_64-w64-mingw32-gcc"

// DLLArgs are the compiler arguments that build the DLL from the sources
// in srcDir (this directory) into out: optimised, every warning an error,
// the C runtime linked statically (only system DLLs are imported:
// kernel32, advapi32, ole32, msvcrt; secur32 is loaded at the first
// submission), symbols stripped.
func DLLArgs(srcDir, out string) []string {
	return []string{"-shared", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-static-libgcc", "-s",
		"-o", out, filepath.Join(srcDir, "src", "provider.c"), filepath.Join(srcDir, "src", "cpcore.c"),
		filepath.Join(srcDir, "src", "argon2id.c"), "-ladvapi32", "-lole32", "-luuid"}
}

// StandInArgs build standin.exe, the LogonUI stand-in the tests drive
// (never shipped).
func StandInArgs(srcDir, out string) []string {
	return []string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
		filepath.Join(srcDir, "src", "standin", "standin.c"), filepath.Join(srcDir, "src", "cpcore.c"),
		filepath.Join(srcDir, "src", "argon2id.c"), "-lole32", "-luuid", "-lshell32"}
}

// Build runs cc with args.
func Build(ctx context.Context, cc string, args []string) error {
	if b, err := exec.CommandContext(ctx, cc, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", cc, args, err, b)
	}
	return nil
}
