package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

// olderInstallSDDL stands for the ACL C:\ProgramData gives what is made
// inside it: SYSTEM, Administrators, and a read entry for Users — here
// Everyone (WD), the one wine can express (it maps a file's DACL onto the
// unix mode bits, and Everyone onto "other"). ProgramData's create and
// CREATOR OWNER entries are left out: wine refuses them as an invalid ACL.
const olderInstallSDDL = "D:(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FR;;;WD)"

// TestProtectStateDir makes a state directory as an older agent left it —
// ProgramData's ACL, a key file, a spool directory and a file inside it
// that Users may read — and checks that Protect leaves SYSTEM and
// Administrators alone on every one of them, and that a file the agent
// writes afterwards gets no more. It runs under wine
// (wine_linux_test.go sets MAMORI_STATE_PROTECT_LIVE=wine); on a Windows
// test machine, as an administrator, set it to 1.
func TestProtectStateDir(t *testing.T) {
	if os.Getenv("MAMORI_STATE_PROTECT_LIVE") == "" {
		t.Skip("changes file ACLs: runs under wine (wine_linux_test.go)")
	}
	// Not t.TempDir: wine's unlinkat fails its clean-up.
	base, err := os.MkdirTemp("", "mamori-state-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "mamori")
	old := []string{dir, filepath.Join(dir, "key.pem"), filepath.Join(dir, "spool"), filepath.Join(dir, "spool", "seg-1"), filepath.Join(dir, "mfa")}
	for _, p := range old {
		if filepath.Ext(p) != "" || strings.HasSuffix(p, "seg-1") {
			if err := os.WriteFile(p, []byte("secret"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := setDACL(p, olderInstallSDDL); err != nil {
			t.Fatalf("set the older install's ACL: %v", err)
		}
		// The test's premise: Users can read it before.
		if sddl := daclOf(t, p); !strings.Contains(sddl, ";WD)") {
			t.Fatalf("%s before: %s, want Everyone in it (the set-up did not take)", p, sddl)
		}
	}
	// A user-added explicit entry on one file (Everyone full control).
	if err := setDACL(filepath.Join(dir, "key.pem"), "D:(A;;FA;;;SY)(A;;FA;;;WD)"); err != nil {
		t.Fatal(err)
	}

	if err := Protect(dir); err != nil {
		t.Fatalf("Protect: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(old, filepath.Join(dir, "cert.pem")) {
		onlySystemAndAdmins(t, p, daclOf(t, p))
	}
	// Idempotent: the second start changes nothing and does not fail.
	if err := Protect(dir); err != nil {
		t.Fatalf("Protect again: %v", err)
	}
	onlySystemAndAdmins(t, dir, daclOf(t, dir))

	// A fresh install: Protect creates the directory.
	fresh := filepath.Join(base, "fresh", "mamori")
	if err := Protect(fresh); err != nil {
		t.Fatalf("Protect a new directory: %v", err)
	}
	onlySystemAndAdmins(t, fresh, daclOf(t, fresh))
}

func daclOf(t *testing.T, p string) string {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(p, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("read the DACL of %s: %v", p, err)
	}
	return sd.String()
}

// onlySystemAndAdmins fails unless every ACE of sddl is an allow entry for
// SYSTEM or Administrators (on Windows both must be there).
//
// Under wine (MAMORI_STATE_PROTECT_LIVE=wine) a file's DACL is made up
// from its unix mode on every read: SYSTEM, the owner (this process's
// user, which is the agent's account: wine runs everything as one user,
// and an Administrator there) and Everyone for the "other" bits. What wine
// can show is that Everyone is gone; the owner's entry is then allowed.
func onlySystemAndAdmins(t *testing.T, p, sddl string) {
	t.Helper()
	self := ""
	if os.Getenv("MAMORI_STATE_PROTECT_LIVE") == "wine" {
		tok := windows.GetCurrentProcessToken()
		u, err := tok.GetTokenUser()
		if err != nil {
			t.Fatal(err)
		}
		self = u.User.Sid.String()
	}
	body := strings.TrimPrefix(sddl, "D:")
	body = strings.TrimLeft(body, "PAIR") // flags: protected, auto-inherited…
	if body == "" {
		t.Errorf("%s: DACL %q has no entries", p, sddl)
		return
	}
	for _, ace := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(body, "("), ")"), ")(") {
		f := strings.Split(ace, ";")
		if len(f) != 6 || f[0] != "A" || (f[5] != "SY" && f[5] != "BA" && f[5] != self) {
			t.Errorf("%s: DACL %s has entry (%s): want SYSTEM and Administrators only", p, sddl, ace)
		}
	}
	if !strings.Contains(sddl, ";SY)") || (self == "" && !strings.Contains(sddl, ";BA)")) {
		t.Errorf("%s: DACL %s: want both SYSTEM and Administrators", p, sddl)
	}
	t.Logf("%s: %s", filepath.Base(p), sddl)
}
