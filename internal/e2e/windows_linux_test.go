package e2e

import (
	"encoding/json"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/credprov"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	"github.com/mamori-dev/mamori/internal/winetest"
	"github.com/mamori-dev/mamori/server/servertest"
)

// TestWindowsLogonEndToEnd: one enrolment with mamorictl, two terminals.
// A Linux terminal (agent core + its socket, as pam_mamori.so asks it)
// and a Windows terminal (the agent core built for Windows under wine,
// enrolled with this real server over loopback, mamori-cp.dll driven by
// the LogonUI stand-in: agent/loginmfa TestWindowsEndToEnd) accept codes
// from the same secret (oathtool's); a recovery code used on Windows is
// refused on Linux after Linux's next bundle.
func TestWindowsLogonEndToEnd(t *testing.T) {
	testenv.Short(t)
	oathtool := testenv.LookPath(t, "oathtool", "oathtool")
	env := winetest.New(t)
	cc := testenv.LookPath(t, credprov.CC, "gcc-mingw-w64-x86-64")
	dir := t.TempDir()
	dll, standin := filepath.Join(dir, credprov.DLLName), filepath.Join(dir, "standin.exe")
	if err := credprov.Build(ctx, cc, credprov.DLLArgs("../../agent/credprov", dll)); err != nil {
		t.Fatal(err)
	}
	if err := credprov.Build(ctx, cc, credprov.StandInArgs("../../agent/credprov", standin)); err != nil {
		t.Fatal(err)
	}
	exe := winetest.BuildTest(t, "../../agent/loginmfa")

	h := servertest.Start(t, servertest.Options{Listen: freeAddr(t)})
	var en struct {
		URI   string   `json:"otpauth_uri"`
		Codes []string `json:"recovery_codes"`
	}
	if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", "tanaka", "-o", "json")), &en); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(en.URI)
	secret := u.Query().Get("secret")
	if _, err := totp.ParseBase32(secret); err != nil || len(en.Codes) != 10 {
		t.Fatalf("enrolment: %v, %d codes", err, len(en.Codes))
	}
	oath := func(at time.Time) string {
		out, err := exec.Command(oathtool, "--totp", "-b", secret, "-N", "@"+strconv.FormatInt(at.Unix(), 10)).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	// The Linux terminal logs tanaka in with a code from the secret (its
	// clock is the server's test clock).
	allowAllMFAUsers(t, h)
	linux := startMFATerminal(t, h, "pc-linux")
	linux.waitRound(t, "the first bundle", func(daemon.RoundResult) bool { return slices.Equal(linux.ver.Users(), []string{"tanaka"}) })
	if v := linux.login(t, "tanaka", oath(h.Clock.Now())); v != mfa.Allow {
		t.Fatalf("Linux terminal, oathtool code: %v", v)
	}

	// The Windows terminal, under wine, on the wall clock.
	var codes []string
	now := time.Now().Unix()
	for at := now - 60; at <= now+300; at += 30 {
		codes = append(codes, strconv.FormatInt(at/30, 10)+":"+oath(time.Unix(at, 0)))
	}
	defer syscall.Umask(syscall.Umask(0o077)) // the break-glass file's DACL under wine: see agent/loginmfa/wine_linux_test.go
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe, "^TestWindowsEndToEnd$",
		"MAMORI_E2E_SERVER="+h.Addr, "MAMORI_E2E_TOKEN="+h.Token(t, 1, 0), "MAMORI_E2E_CA="+h.Srv.Boot.CAFingerprint,
		"MAMORI_E2E_USER=tanaka", "MAMORI_E2E_RECOVERY="+en.Codes[0],
		"MAMORI_CP_DLL="+winPath(dll), "MAMORI_CP_STANDIN="+winPath(standin), "MAMORI_CP_CODES="+strings.Join(codes, ",")))

	// The server took the code from every terminal; Linux refuses it after
	// its next bundle.
	waitList(t, h, "the server to consume the recovery code used on Windows", "tanaka", func(rec, _ int) bool { return rec == 9 })
	linux.caughtUp(t, h, "Linux's bundle without the code")
	if v := linux.login(t, "tanaka", en.Codes[0]); v != mfa.Deny {
		t.Fatalf("recovery code used on Windows, then on Linux: %v", v)
	}
	if v := linux.login(t, "tanaka", en.Codes[1]); v != mfa.Allow {
		t.Fatalf("another recovery code on Linux: %v", v)
	}
}

// winPath turns a Linux path into wine's Z: drive path.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }
