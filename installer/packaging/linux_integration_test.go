package packaging

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mamori-dev/mamori/agent/pam/pamtest"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// udevRule is the media control's rule, shipped as it is in the repository.
const udevRule = "../udev/60-mamori-media.rules"

var (
	pamOnce sync.Once
	pamSO   string
	pamErr  error
)

// pamModule builds the real pam_mamori.so with gcc once per test run.
func pamModule(t *testing.T) string {
	t.Helper()
	testenv.LookPath(t, "gcc", "gcc")
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		testenv.Unavailable(t, "PAM headers missing (Debian: libpam0g-dev)")
	}
	pamOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mamori-pam-")
		if err != nil {
			pamErr = err
			return
		}
		pamSO = filepath.Join(dir, "pam_mamori.so")
		pamErr = pamtest.Build(pamSO)
	})
	if pamErr != nil {
		t.Fatal(pamErr)
	}
	return pamSO
}

// fakeAgent stands in for the agent binary: these tests are about the
// package, not the agent (the MSI test runs the real one). The PAM module
// is the real one, built with gcc.
func buildLinux(t *testing.T, version string) (debPath, rpmPath string) {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "mamori-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\necho mamori-agent "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := Linux{Version: version, Arch: "amd64", Agent: agent, UdevRule: udevRule, PAMModule: pamModule(t), WorkDir: dir}
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
		"./usr/lib/udev/rules.d/60-mamori-media.rules",
		"-rw-r--r-- root/root", "./usr/lib/x86_64-linux-gnu/security/pam_mamori.so",
		"./usr/share/pam-configs/mamori", "./usr/share/mamori-agent/pam_mamori.so.sha256",
		// What lintian asked for (issue 21): copyright, changelog, manual page.
		"./usr/share/doc/mamori-agent/copyright", "./usr/share/doc/mamori-agent/changelog.gz", "./usr/share/man/man8/mamori-agent.8.gz")
	mustContain(t, "dpkg-deb -I", out(t, nil, dpkgDeb, "-I", deb),
		"Package: mamori-agent", "Version: 1.2.3", "Architecture: amd64", "postinst", "prerm", "postrm", "config", "templates",
		"Depends: libc6 (>= 2.33), libpam0g (>= 0.99.7.1), libargon2-1, debconf (>= 0.5) | debconf-2.0", "Recommends: systemd, udev")
	ctl := t.TempDir()
	out(t, nil, dpkgDeb, "-e", deb, ctl)
	templates, _ := os.ReadFile(filepath.Join(ctl, "templates"))
	mustContain(t, "templates", string(templates), "Template: mamori-agent/server\nType: string",
		"Template: mamori-agent/token\nType: password", "Template: mamori-agent/ca_fingerprint", "Description-ja.UTF-8: 登録トークン:")
	config, _ := os.ReadFile(filepath.Join(ctl, "config"))
	mustContain(t, "config", string(config), "db_input low mamori-agent/token")
	postinst, _ := os.ReadFile(filepath.Join(ctl, "postinst"))
	mustContain(t, "postinst", string(postinst), `db_set mamori-agent/token ""`)
	if regexp.MustCompile(`(?m)^[^#]*(pam-auth-update|authselect)`).Match(postinst) {
		t.Error("postinst runs pam-auth-update: the package must never switch PAM on")
	}
	prerm, _ := os.ReadFile(filepath.Join(ctl, "prerm"))
	mustContain(t, "prerm", string(prerm), "pam-auth-update --package --remove mamori")
	// The module inside is the one built, and the recorded hash is its hash.
	x := t.TempDir()
	out(t, nil, dpkgDeb, "-x", deb, x)
	so, _ := os.ReadFile(pamModule(t))
	got, _ := os.ReadFile(filepath.Join(x, "usr/lib/x86_64-linux-gnu/security/pam_mamori.so"))
	sum := sha256.Sum256(so)
	if !bytes.Equal(got, so) {
		t.Error("packaged pam_mamori.so differs from the built one")
	}
	rec, _ := os.ReadFile(filepath.Join(x, "usr/share/mamori-agent/pam_mamori.so.sha256"))
	if string(rec) != hex.EncodeToString(sum[:])+"  pam_mamori.so\n" {
		t.Errorf("hash record %q", rec)
	}
	profile, _ := os.ReadFile(filepath.Join(x, "usr/share/pam-configs/mamori"))
	mustContain(t, "pam-auth-update profile", string(profile), "Default: no\n", "Auth-Type: Additional\n", "required\tpam_mamori.so")
	unit := out(t, nil, dpkgDeb, "--fsys-tarfile", deb)
	mustContain(t, "unit", unit, "Restart=on-failure", "EnvironmentFile=-/etc/default/mamori-agent", "ExecStart=/usr/sbin/mamori-agent run")
}

// TestRPMContents inspects the .rpm with rpm -qlp and --scripts.
func TestRPMContents(t *testing.T) {
	rpmTool := testenv.LookPath(t, "rpm", "rpm")
	_, rpm := buildLinux(t, "v1.2.3")
	files := out(t, nil, rpmTool, "-qlp", rpm)
	mustContain(t, "rpm -qlp", files,
		"/usr/sbin/mamori-agent", "/usr/lib/systemd/system/mamori-agent.service", "/usr/lib/udev/rules.d/60-mamori-media.rules",
		"/usr/lib64/security/pam_mamori.so", "/usr/share/mamori-agent/pam_mamori.so.sha256",
		"/usr/share/doc/mamori-agent/copyright", "/usr/share/man/man8/mamori-agent.8.gz")
	// It owns its directories and requires what it runs (issue 21: no Requires at all).
	mustContain(t, "rpm -qlp", files, "/usr/share/mamori-agent\n")
	mustContain(t, "rpm -qp --requires", out(t, nil, rpmTool, "-qp", "--requires", rpm), "/bin/sh", "glibc >= 2.33", "pam", "libargon2.so.1()(64bit)")
	if strings.Contains(files, "pam-configs") {
		t.Error("the rpm ships a pam-auth-update profile")
	}
	mustContain(t, "rpm -qp --scripts", out(t, nil, rpmTool, "-qp", "--scripts", rpm), "authselect disable-feature with-mamori")
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

	root := newDpkgRoot(t)
	dc := newDebconf(t, root)
	hostPAM := digest(t, "/etc/pam.d")
	dpkgIn := func(env []string, args ...string) string {
		return out(t, append(dc.env, env...), dpkg, append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
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

	// A value that would add a line to the root service's environment is
	// refused, and no file is written (issue 21: MAMORI_TOKEN=$'x\nLD_PRELOAD=evil.so').
	hostile := exec.Command(dpkg, "--root="+root, "--force-script-chrootless", "-i", deb1)
	hostile.Env = append(os.Environ(), append(dc.env, "MAMORI_SERVER=s:1", "MAMORI_TOKEN=x\nLD_PRELOAD=evil.so", "MAMORI_CA_FINGERPRINT=sha256:ab")...)
	if b, err := hostile.CombinedOutput(); err == nil || !strings.Contains(string(b), "MAMORI_TOKEN contains a newline") {
		t.Fatalf("a token with a newline was accepted: %v\n%s", err, b)
	}
	if _, err := os.Stat(at("etc/default/mamori-agent")); err == nil {
		t.Fatal("a refused install left /etc/default/mamori-agent")
	}
	dpkgIn(nil, "--purge", "mamori-agent")

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
		"\nMAMORI_SERVER='mamori.example.lg.jp:8443'\n", "\nMAMORI_TOKEN='mme_secret'\n", "\nMAMORI_CA_FINGERPRINT='sha256:ab'\n")
	// PAM: the module and its profile are installed, nothing is switched
	// on — the root's /etc/pam.d (a copy of this machine's) is untouched.
	for _, p := range []string{"usr/lib/x86_64-linux-gnu/security/pam_mamori.so", "usr/share/pam-configs/mamori"} {
		if got := mode(p); got != 0o644 {
			t.Errorf("%s: mode %v", p, got)
		}
	}
	if diff := digestDiff(digest(t, at("etc/pam.d")), rootPAM(t, root)); diff != "" {
		t.Errorf("installing changed the root's /etc/pam.d: %s", diff)
	}

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
		if err == nil && !d.IsDir() && !strings.HasPrefix(rel, "var/lib/dpkg") && !strings.HasPrefix(rel, "etc/pam.d/") &&
			rel != "etc/debconf.conf" && !strings.HasPrefix(rel, "var/cache/debconf/") {
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
	if diff := digestDiff(digest(t, "/etc/pam.d"), hostPAM); diff != "" {
		t.Errorf("this machine's /etc/pam.d changed: %s", diff)
	}
}

// newDpkgRoot makes a throwaway root for dpkg --root, with a copy of this
// machine's /etc/pam.d so that "the package does not touch PAM" is checked
// against a real configuration.
func newDpkgRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	// The machine's package database, so the package's Depends (libc6,
	// libpam0g, debconf) are satisfied as they are here.
	if b, err := exec.Command("cp", "/var/lib/dpkg/status", filepath.Join(root, "var/lib/dpkg/status")).CombinedOutput(); err != nil {
		t.Fatalf("copy dpkg status: %v %s", err, b)
	}
	if b, err := exec.Command("cp", "-a", "/etc/pam.d", filepath.Join(root, "etc/pam.d")).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/pam.d: %v %s", err, b)
	}
	rootPAMs.Store(root, digest(t, filepath.Join(root, "etc/pam.d")))
	return root
}

var rootPAMs sync.Map

// rootPAM is the digest of the root's /etc/pam.d when it was made.
func rootPAM(t *testing.T, root string) map[string]string {
	v, _ := rootPAMs.Load(root)
	m, _ := v.(map[string]string)
	return m
}

// debconf is the throwaway root's own debconf database. debconf follows
// DPKG_ROOT (Debconf/Config.pm reads $DPKG_ROOT/etc/debconf.conf and its
// File driver puts the root before each Filename), so
// the maintainer scripts and debconf-set-selections with DPKG_ROOT set
// use it, never this machine's.
type debconf struct {
	dir string
	env []string
}

func newDebconf(t *testing.T, root string) debconf {
	t.Helper()
	testenv.LookPath(t, "debconf-set-selections", "debconf")
	dir := filepath.Join(root, "var/cache/debconf")
	os.MkdirAll(dir, 0o755)
	conf := "Config: configdb\nTemplates: templatedb\n\n" +
		"Name: configdb\nDriver: File\nMode: 600\nFilename: /var/cache/debconf/config.dat\n\n" +
		"Name: templatedb\nDriver: File\nMode: 644\nFilename: /var/cache/debconf/templates.dat\n"
	if err := os.WriteFile(filepath.Join(root, "etc/debconf.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return debconf{dir: dir, env: []string{"DEBIAN_FRONTEND=noninteractive"}}
}

// db is everything debconf stored.
func (d debconf) db(t *testing.T) string {
	var all []byte
	for _, f := range []string{"config.dat", "templates.dat"} {
		b, _ := os.ReadFile(filepath.Join(d.dir, f))
		all = append(all, b...)
	}
	return string(all)
}

func digest(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), "mamori-test-") {
			return nil // agent/pam/pamtest's transient services
		}
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			m[rel] = hex.EncodeToString(sum[:])
		} else {
			m[rel] = d.Type().String()
		}
		return nil
	})
	if len(m) < 2 {
		t.Fatalf("%s looks empty", dir)
	}
	return m
}

func digestDiff(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	return strings.Join(d, ", ")
}

// TestDebPreseed installs the .deb silently with a debconf preseed (what
// debconf-set-selections does on a terminal before `apt-get install`):
// the answers land in /etc/default/mamori-agent (0600), the token does not
// stay in debconf's database, an upgrade neither asks nor rewrites, and
// purge forgets every answer.
func TestDebPreseed(t *testing.T) {
	testenv.RequireRoot(t)
	dpkg := testenv.LookPath(t, "dpkg", "dpkg")
	deb1, _ := buildLinux(t, "v1.0.0")
	deb2, _ := buildLinux(t, "v1.1.0")
	root := newDpkgRoot(t)
	dc := newDebconf(t, root)
	const token = "mme_preseeded_0123456789abcdef"
	sel := "mamori-agent mamori-agent/server string mamori.example.lg.jp:8443\n" +
		"mamori-agent mamori-agent/token password " + token + "\n" +
		"mamori-agent mamori-agent/ca_fingerprint string sha256:0a1b2c\n"
	cmd := exec.Command("debconf-set-selections")
	cmd.Env = append(os.Environ(), append(dc.env, "DPKG_ROOT="+root)...)
	cmd.Stdin = strings.NewReader(sel)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debconf-set-selections: %v %s", err, b)
	}
	if !strings.Contains(dc.db(t), token) {
		t.Fatal("the preseed did not reach the throwaway debconf database")
	}
	dpkgIn := func(args ...string) string {
		return out(t, dc.env, dpkg, append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	}
	dpkgIn("-i", deb1)
	at := func(p string) string { return filepath.Join(root, p) }
	b, err := os.ReadFile(at("etc/default/mamori-agent"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "/etc/default/mamori-agent", string(b),
		"\nMAMORI_SERVER='mamori.example.lg.jp:8443'\n", "\nMAMORI_TOKEN='"+token+"'\n", "\nMAMORI_CA_FINGERPRINT='sha256:0a1b2c'\n")
	if fi, _ := os.Stat(at("etc/default/mamori-agent")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	db := dc.db(t)
	if strings.Contains(db, token) {
		t.Errorf("the token is still in debconf's database after install:\n%s", db)
	}
	mustContain(t, "debconf database", db, "Name: mamori-agent/server", "mamori.example.lg.jp:8443", "Name: mamori-agent/token")
	if i := strings.Index(db, "Name: mamori-agent/token"); i >= 0 {
		stanza, _, _ := strings.Cut(db[i:], "\n\n")
		t.Logf("the token's record in debconf's database after install:\n%s", stanza)
	}
	if diff := digestDiff(digest(t, at("etc/pam.d")), rootPAM(t, root)); diff != "" {
		t.Errorf("installing changed the root's /etc/pam.d: %s", diff)
	}

	// Upgrade: the file is kept as it is, nothing is asked.
	os.WriteFile(at("etc/default/mamori-agent"), []byte("MAMORI_SERVER=edited:8443\n"), 0o600)
	dpkgIn("-i", deb2)
	if b, _ := os.ReadFile(at("etc/default/mamori-agent")); string(b) != "MAMORI_SERVER=edited:8443\n" {
		t.Errorf("upgrade rewrote /etc/default/mamori-agent: %q", b)
	}
	dpkgIn("--purge", "mamori-agent")
	if db := dc.db(t); strings.Contains(db, "mamori-agent/") {
		t.Errorf("purge left debconf answers:\n%s", db)
	}
	if _, err := os.Stat(at("etc/default/mamori-agent")); err == nil {
		t.Error("purge left /etc/default/mamori-agent")
	}
}
