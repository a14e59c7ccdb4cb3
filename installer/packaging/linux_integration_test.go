package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// udevRule is the media control's rule, shipped as it is in the repository.
const udevRule = "../udev/60-mamori-media.rules"

// fakeAgent stands in for the agent binary: these tests are about the
// package, not the agent (the MSI test runs the real one).
func buildLinux(t *testing.T, version string) (debPath, rpmPath string) {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "mamori-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\necho mamori-agent "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := Linux{Version: version, Arch: "amd64", Agent: agent, UdevRule: udevRule, WorkDir: dir}
	var deb, rpm bytes.Buffer
	if err := l.Deb(&deb); err != nil {
		t.Fatal(err)
	}
	if err := l.RPM(&rpm); err != nil {
		t.Fatal(err)
	}
	debPath, rpmPath = filepath.Join(dir, "mamori-agent.deb"), filepath.Join(dir, "mamori-agent.rpm")
	os.WriteFile(debPath, deb.Bytes(), 0o644)
	os.WriteFile(rpmPath, rpm.Bytes(), 0o644)
	return debPath, rpmPath
}

func out(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

// TestDebContents inspects the .deb with dpkg-deb: files, modes, control
// fields, maintainer scripts.
func TestDebContents(t *testing.T) {
	dpkgDeb := testenv.LookPath(t, "dpkg-deb", "dpkg")
	deb, _ := buildLinux(t, "v1.2.3")
	mustContain(t, "dpkg-deb -c", out(t, nil, dpkgDeb, "-c", deb),
		"-rwxr-xr-x root/root", "./usr/sbin/mamori-agent",
		"-rw-r--r-- root/root", "./usr/lib/systemd/system/mamori-agent.service",
		"./usr/lib/udev/rules.d/60-mamori-media.rules")
	mustContain(t, "dpkg-deb -I", out(t, nil, dpkgDeb, "-I", deb),
		"Package: mamori-agent", "Version: 1.2.3", "Architecture: amd64", "postinst", "prerm", "postrm")
	unit := out(t, nil, dpkgDeb, "--fsys-tarfile", deb)
	mustContain(t, "unit", unit, "Restart=on-failure", "EnvironmentFile=-/etc/default/mamori-agent", "ExecStart=/usr/sbin/mamori-agent run")
}

// TestRPMContents inspects the .rpm with rpm -qlp and --scripts.
func TestRPMContents(t *testing.T) {
	rpmTool := testenv.LookPath(t, "rpm", "rpm")
	_, rpm := buildLinux(t, "v1.2.3")
	mustContain(t, "rpm -qlp", out(t, nil, rpmTool, "-qlp", rpm),
		"/usr/sbin/mamori-agent", "/usr/lib/systemd/system/mamori-agent.service", "/usr/lib/udev/rules.d/60-mamori-media.rules")
	mustContain(t, "rpm -qp --scripts", out(t, nil, rpmTool, "-qp", "--scripts", rpm),
		"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "MAMORI_TOKEN")
	mustContain(t, "rpm -qip", out(t, nil, rpmTool, "-qip", rpm), "Name        : mamori-agent", "Version     : 1.2.3")
}

// TestDebInstallPurge installs the .deb for real with dpkg into a
// throwaway root (dpkg --root, maintainer scripts run with
// --force-script-chrootless and honour DPKG_ROOT), upgrades it, removes
// and purges it, and checks the files at each step.
func TestDebInstallPurge(t *testing.T) {
	testenv.RequireRoot(t)
	dpkg := testenv.LookPath(t, "dpkg", "dpkg")
	deb1, _ := buildLinux(t, "v1.0.0")
	deb2, _ := buildLinux(t, "v1.1.0")

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	dpkgIn := func(env []string, args ...string) string {
		return out(t, env, dpkg, append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	}
	at := func(p string) string { return filepath.Join(root, p) }
	mode := func(p string) os.FileMode {
		t.Helper()
		fi, err := os.Stat(at(p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}

	// Silent install: the enrolment settings come from the environment.
	env := []string{"MAMORI_SERVER=mamori.example.lg.jp:8443", "MAMORI_TOKEN=mme_secret", "MAMORI_CA_FINGERPRINT=sha256:ab"}
	dpkgIn(env, "-i", deb1)
	for p, want := range map[string]os.FileMode{
		"usr/sbin/mamori-agent": 0o755, "usr/lib/systemd/system/mamori-agent.service": 0o644,
		"usr/lib/udev/rules.d/60-mamori-media.rules": 0o644, "etc/default/mamori-agent": 0o600, "var/lib/mamori": 0o700,
	} {
		if got := mode(p); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	rule, _ := os.ReadFile(udevRule)
	if got, _ := os.ReadFile(at("usr/lib/udev/rules.d/60-mamori-media.rules")); !bytes.Equal(got, rule) {
		t.Error("installed udev rule differs from installer/udev/60-mamori-media.rules")
	}
	defaults, _ := os.ReadFile(at("etc/default/mamori-agent"))
	mustContain(t, "/etc/default/mamori-agent", string(defaults),
		"\nMAMORI_SERVER=mamori.example.lg.jp:8443\n", "\nMAMORI_TOKEN=mme_secret\n", "\nMAMORI_CA_FINGERPRINT=sha256:ab\n")

	// Upgrade: settings an administrator edited and the state stay.
	os.WriteFile(at("etc/default/mamori-agent"), []byte("MAMORI_SERVER=edited:8443\n"), 0o600)
	os.WriteFile(at("var/lib/mamori/device.json"), []byte("{}"), 0o600)
	dpkgIn([]string{"MAMORI_SERVER=ignored:1"}, "-i", deb2)
	if b, _ := os.ReadFile(at("etc/default/mamori-agent")); string(b) != "MAMORI_SERVER=edited:8443\n" {
		t.Errorf("upgrade rewrote /etc/default/mamori-agent: %q", b)
	}
	if b, _ := os.ReadFile(at("usr/sbin/mamori-agent")); !strings.Contains(string(b), "v1.1.0") {
		t.Error("upgrade did not replace the agent binary")
	}
	mustContain(t, "dpkg -s", dpkgIn(nil, "-s", "mamori-agent"), "Status: install ok installed", "Version: 1.1.0")

	// Remove keeps the enrolment; purge forgets it.
	dpkgIn(nil, "-r", "mamori-agent")
	for _, p := range []string{"usr/sbin/mamori-agent", "usr/lib/systemd/system/mamori-agent.service", "usr/lib/udev/rules.d/60-mamori-media.rules"} {
		if _, err := os.Stat(at(p)); err == nil {
			t.Errorf("%s still there after remove", p)
		}
	}
	for _, p := range []string{"var/lib/mamori/device.json", "etc/default/mamori-agent"} {
		if _, err := os.Stat(at(p)); err != nil {
			t.Errorf("remove deleted %s: %v", p, err)
		}
	}
	dpkgIn(nil, "--purge", "mamori-agent")
	var left []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err == nil && !d.IsDir() && !strings.HasPrefix(rel, "var/lib/dpkg") {
			left = append(left, rel)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("files left after purge: %v", left)
	}
	if _, err := os.Stat(at("var/lib/mamori")); err == nil {
		t.Error("/var/lib/mamori left after purge")
	}
}
