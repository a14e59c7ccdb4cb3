package loginmfa_test

import (
	"context"
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
	// Codes for now and ±2 steps, made with plenty of the step left: the
	// test must finish the right-code cases inside this step.
	for time.Now().Unix()%30 > 4 {
		time.Sleep(250 * time.Millisecond)
	}
	now := time.Now().Unix()
	code := func(at int64) string {
		out, err := exec.Command(oathtool, "--totp", "-b", secret.Base32(), "-N", "@"+strconv.FormatInt(at, 10)).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	// Wine derives a file's DACL from its unix mode bits (it cannot keep
	// the one the agent sets on this file system): with the default umask
	// the break-glass file would grant Everyone read, and mamori-cp.dll
	// rightly refuses to trust it. umask 077 gives wine the private
	// directory a real terminal has (SYSTEM/Administrators only).
	defer syscall.Umask(syscall.Umask(0o077))
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe, "^(TestWindowsNotApplicable|TestWindowsStandIn|TestWindowsCredProvControl)$",
		"MAMORI_LOGINMFA_HKLM=1",
		"MAMORI_CP_DLL="+winPath(dll), "MAMORI_CP_STANDIN="+winPath(standin),
		"MAMORI_CP_SECRET="+secret.Base32(),
		"MAMORI_CP_CODE_NOW="+code(now), "MAMORI_CP_CODE_PREV2="+code(now-60), "MAMORI_CP_CODE_NEXT2="+code(now+60)))
}

// winPath turns a Linux path into wine's Z: drive path.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }
