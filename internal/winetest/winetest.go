// Package winetest runs Go Windows binaries under wine from a Linux
// `go test`: it finds wine64, makes a throwaway wine prefix, patches wine
// 8.0's missing ProcessPrng with a stub DLL built from testdata/processprng.c
// (test scaffolding, never shipped), and builds and runs
// `GOOS=windows go test -c` binaries there, propagating their exit code.
//
// A prefix takes about 8 s to initialise: make one per package (one
// top-level test with subtests) and share it.
//
// When wine64, wineserver or the mingw compiler is missing, New calls
// testenv.Unavailable: a skip on a developer's machine, a failure in CI.
package winetest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
)

//go:embed testdata/processprng.c
var processPrngC []byte

// Debian 12 installs wine64 outside PATH.
const wineLibDir = "/usr/lib/wine"

// Env is an initialised wine prefix.
type Env struct {
	Wine64     string
	Wineserver string
	// Prefix is the WINEPREFIX directory; drive_c is inside it.
	Prefix string
}

// Find returns the path of a wine program: PATH first, then Debian's
// /usr/lib/wine.
func find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join(wineLibDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found on PATH or in %s", name, wineLibDir)
	}
	return p, nil
}

// New makes a fresh prefix under t.TempDir, initialises it, installs the
// ProcessPrng stub and registers clean-up (wineserver -k before the
// directory goes).
func New(t testing.TB) *Env {
	t.Helper()
	testenv.Short(t)
	wine, err := find("wine64")
	if err != nil {
		testenv.Unavailable(t, err.Error()+" (apt-get install wine64 wine)")
	}
	server, err := find("wineserver")
	if err != nil {
		testenv.Unavailable(t, err.Error()+" (apt-get install wine64 wine)")
	}
	gcc := testenv.LookPath(t, "x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64")

	dir := t.TempDir()
	e := &Env{Wine64: wine, Wineserver: server, Prefix: filepath.Join(dir, "prefix")}
	t.Cleanup(func() { // runs before TempDir's removal
		// Both in this prefix: without WINEPREFIX, -k went to the default
		// prefix, and -w then waited forever on a test that leaves wine
		// processes running here (a service, a keep-alive).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		kill := exec.CommandContext(ctx, e.Wineserver, "-k")
		kill.Env = e.Environ()
		kill.Run() //nolint:errcheck // nothing left to kill is fine
		cmd := exec.CommandContext(ctx, e.Wineserver, "-w")
		cmd.Env = e.Environ()
		cmd.Run() //nolint:errcheck
	})

	// Build the stub while the prefix initialises.
	dll := filepath.Join(dir, "bcryptprimitives.dll")
	src := filepath.Join(dir, "processprng.c")
	if err := os.WriteFile(src, processPrngC, 0o644); err != nil {
		t.Fatal(err)
	}
	gccOut := make(chan error, 1)
	go func() {
		out, err := exec.Command(gcc, "-O2", "-shared", "-o", dll, src, "-ladvapi32").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		gccOut <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := e.output(e.Command(ctx, "wineboot", "--init")); err != nil {
		t.Fatalf("wineboot --init: %v\n%s", err, out)
	}
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-gccOut; err != nil {
		t.Fatalf("build the ProcessPrng stub: %v", err)
	}
	b, err := os.ReadFile(dll)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Path(`C:\windows\system32\bcryptprimitives.dll`), b, 0o644); err != nil {
		t.Fatalf("install the ProcessPrng stub: %v", err)
	}
	return e
}

// Environ is the environment wine runs with: this prefix, no debug noise,
// no Mono/Gecko install prompts.
func (e *Env) Environ() []string {
	return append(os.Environ(), "WINEPREFIX="+e.Prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
}

// Command is exec.CommandContext for wine64 in this prefix.
func (e *Env) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Wine64, args...)
	cmd.Env = e.Environ()
	return cmd
}

// output runs cmd with stdout and stderr going to a file, not a pipe: the
// wineserver a first wine process starts inherits its descriptors and
// outlives it, so a pipe would never reach EOF.
func (e *Env) output(cmd *exec.Cmd) (string, error) {
	f, err := os.CreateTemp("", "winetest-out-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	b, _ := os.ReadFile(f.Name())
	return string(b), err
}

// Wait waits for the prefix's wineserver to finish (wineserver -w): after
// wineboot and msiexec, so the next command sees a settled prefix.
func (e *Env) Wait(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, e.Wineserver, "-w")
	cmd.Env = e.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wineserver -w: %v\n%s", err, out)
	}
	return nil
}

// Path turns a C:\ path into the Linux path inside the prefix.
func (e *Env) Path(winPath string) string {
	p, ok := strings.CutPrefix(winPath, `C:\`)
	if !ok {
		p, _ = strings.CutPrefix(winPath, `c:\`)
	}
	return filepath.Join(e.Prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(p, `\`, "/")))
}

// BuildTest compiles the tests of the package in pkgDir for Windows
// (GOOS=windows go test -c) into a temporary directory and returns the
// .exe path.
func BuildTest(t testing.TB, pkgDir string) string {
	t.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), filepath.Base(abs)+".test.exe")
	cmd := exec.Command("go", "test", "-c", "-o", exe, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go test -c in %s: %v\n%s", pkgDir, err, out)
	}
	return exe
}

// Run runs exe under wine with args and extra environment variables and
// returns its combined output and exit code. A failure to start wine at
// all fails t.
func (e *Env) Run(t testing.TB, timeout time.Duration, env []string, exe string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := e.Command(ctx, append([]string{exe}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	out, err := e.output(cmd)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case ctx.Err() != nil:
		t.Fatalf("wine %s: timed out after %s\n%s", filepath.Base(exe), timeout, out)
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	default:
		t.Fatalf("wine %s: %v\n%s", filepath.Base(exe), err, out)
	}
	return "", -1
}

// RunGoTest runs a Windows test binary built by BuildTest with -test.v
// and the given -test.run pattern, failing t with the output when it does
// not exit 0. env marks what the Windows-side tests need (e.g. a variable
// that allows them to touch HKLM).
func (e *Env) RunGoTest(t testing.TB, exe, run string, env ...string) string {
	t.Helper()
	out, code := e.Run(t, 2*time.Minute, env, exe, "-test.v", "-test.count=1", "-test.run", run)
	if code != 0 {
		t.Fatalf("%s under wine exited %d:\n%s", filepath.Base(exe), code, out)
	}
	if strings.Contains(out, "no tests to run") {
		t.Fatalf("%s under wine ran no tests matching %q:\n%s", filepath.Base(exe), run, out)
	}
	return out
}
