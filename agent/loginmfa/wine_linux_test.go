package loginmfa_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/credprov"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs the Windows build of the control under wine: without
// a credential provider wired it says NOT_APPLICABLE (never pretends);
// with one, the control's scenario runs against wine's registry, and
// mamori-cp.dll (built here with mingw) is driven through COM by the
// LogonUI stand-in against the agent's real pipe and verifier, with TOTP
// codes from oathtool.
func TestUnderWine(t *testing.T) {
	testenv.Short(t)
	oathtool := testenv.LookPath(t, "oathtool", "oathtool")
	env := winetest.New(t)
	cc := testenv.LookPath(t, credprov.CC, "gcc-mingw-w64-x86-64")
	ctx := context.Background()
	dir := t.TempDir()
	dll, standin := filepath.Join(dir, credprov.DLLName), filepath.Join(dir, "standin.exe")
	if err := credprov.Build(ctx, cc, credprov.DLLArgs("../credprov", dll)); err != nil {
		t.Fatal(err)
	}
	if err := credprov.Build(ctx, cc, credprov.StandInArgs("../credprov", standin)); err != nil {
		t.Fatal(err)
	}
	exe := winetest.BuildTest(t, ".")

	secret, err := totp.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// oathtool's codes for every step from two minutes ago to ten minutes
	// ahead: the Windows side picks the step it needs when it needs it, so
	// a slow machine moving into the next step changes nothing.
	var codes []string
	now := time.Now().Unix()
	for at := now - 120; at <= now+600; at += 30 {
		out, err := exec.Command(oathtool, "--totp", "-b", secret.Base32(), "-N", "@"+strconv.FormatInt(at, 10)).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		codes = append(codes, strconv.FormatInt(at/30, 10)+":"+strings.TrimSpace(string(out)))
	}
	// Wine derives a file's DACL from its unix mode bits (it cannot keep
	// the one the agent sets on this file system): with the default umask
	// the break-glass file would grant Everyone read, and mamori-cp.dll
	// rightly refuses to trust it. umask 077 gives wine the private
	// directory a real terminal has (SYSTEM/Administrators only).
	defer syscall.Umask(syscall.Umask(0o077))
	// The machine's load decides the bench's tails: said with its lines.
	loadavg := func(when string) {
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			t.Logf("BENCH load average %s the Windows tests: %s", when, strings.TrimSpace(string(b)))
		}
	}
	loadavg("before")
	defer loadavg("after")
	// RunGoTest's two minutes are too short for make bench's thousands of
	// logins on a shared machine: run the binary with a longer bound.
	out, rc := env.Run(t, 20*time.Minute, []string{
		"MAMORI_LOGINMFA_HKLM=1", "MAMORI_CP_BENCH_N=" + os.Getenv("MAMORI_CP_BENCH_N"),
		"MAMORI_CP_DLL=" + winPath(dll), "MAMORI_CP_STANDIN=" + winPath(standin),
		"MAMORI_CP_SECRET=" + secret.Base32(), "MAMORI_CP_CODES=" + strings.Join(codes, ",")},
		exe, "-test.v", "-test.count=1", "-test.run", "^(TestWindowsNotApplicable|TestWindowsStandIn|TestWindowsCredProvControl|TestWindowsSecurityLog)$")
	if rc != 0 || !strings.Contains(out, "--- PASS: TestWindowsStandIn") {
		t.Fatalf("%s under wine exited %d:\n%s", filepath.Base(exe), rc, out)
	}
	t.Logf("under wine:\n%s", out)
}

// winPath turns a Linux path into wine's Z: drive path.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }
