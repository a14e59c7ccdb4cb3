// Package testenv decides what a test does when a real component it needs
// (root, PostgreSQL, a TPM, a browser, wine) is missing: skip with a reason
// on a developer's machine, fail when CI=true, so a green CI means the real
// thing ran.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether CI=true.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t with reason, or fails it under CI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required for CI but unavailable: %s", reason)
	}
	t.Skipf("skipped: %s (CI=true makes this a failure)", reason)
}

// RequireRoot needs uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// LookPath returns the path of a program, or calls Unavailable with a hint
// of the Debian package that provides it.
func LookPath(t testing.TB, prog, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		Unavailable(t, prog+" not found (apt-get install "+debianPackage+")")
	}
	return p
}

// Short skips t under -short: integration tests that take seconds are left
// out of `make check`. It never fails, not even in CI, because CI runs
// without -short.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
}

// NotUnderRace skips t in a -race build. It is for a test that measures
// a program built separately without the race detector (the release
// agent's memory and wake-ups), where an instrumented test binary adds
// nothing to check and the run only repeats the plain one; `make test`
// runs every test plainly before its race pass. It never fails, not even
// in CI.
func NotUnderRace(t testing.TB, why string) {
	t.Helper()
	if Race {
		t.Skipf("not under -race: %s; the plain run of the suite runs it", why)
	}
}
