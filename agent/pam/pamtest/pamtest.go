// Package pamtest builds pam_mamori.so (agent/pam/pam_mamori.c, a C
// module with no Go inside: see the comment at its top and docs/mfa.md)
// and tests it through the real PAM stack with pamtester. `make pam`
// builds the module the same way.
package pamtest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Source is the module's source, relative to this package.
const Source = "../pam_mamori.c"

// CFlags are the flags the module is built with (warnings are errors):
// the Makefile's PAM_CFLAGS. It is loaded into sshd, login and gdm, so it
// is hardened as a distribution would build it: stack protector, fortified
// libc calls, full RELRO with immediate binding, no executable stack, and
// a build ID.
var CFlags = []string{"-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
	"-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now", "-Wl,--build-id=sha1", "-Wl,-z,noexecstack"}

// Build compiles pam_mamori.c with gcc into out. It needs gcc and the
// PAM headers (Debian: gcc, libpam0g-dev).
func Build(out string) error {
	_, self, _, _ := runtime.Caller(0)
	args := append([]string{}, CFlags...)
	args = append(args, "-o", out, filepath.Join(filepath.Dir(self), Source), "-lpam")
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc %s: %w\n%s", Source, err, b)
	}
	return nil
}
