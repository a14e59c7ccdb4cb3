package packaging

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// Installed paths on Linux.
const (
	AgentPath = "/usr/sbin/mamori-agent"
	UnitPath  = "/usr/lib/systemd/system/mamori-agent.service"
	// BootUnitPath loads the isolation ruleset before the network
	// (agent/isolation.Boot).
	BootUnitPath = "/usr/lib/systemd/system/mamori-isolation-boot.service"
	UdevRulePath = "/usr/lib/udev/rules.d/60-mamori-media.rules"
	DocDir       = "/usr/share/doc/mamori-agent"
	// PAMProfilePath is the pam-auth-update profile (deb). The package
	// installs it and never enables it: the agent does, when the policy
	// puts login-mfa in enforce mode (agent/loginmfa).
	PAMProfilePath = "/usr/share/pam-configs/mamori"
	// PAMHashPath records the module's SHA-256 at build time; the
	// login-mfa control compares the installed module with it.
	PAMHashPath = "/usr/share/mamori-agent/pam_mamori.so.sha256"
	// ManPath is mamori-agent(8).
	ManPath = "/usr/share/man/man8/mamori-agent.8.gz"
)

// PAMModulePath is where libpam looks for modules: Debian's multiarch
// directory for the deb, /usr/lib64/security (or /usr/lib/security) for
// the rpm.
func PAMModulePath(format, arch string) string {
	if format == "rpm" {
		if arch == "386" || arch == "arm" {
			return "/usr/lib/security/pam_mamori.so"
		}
		return "/usr/lib64/security/pam_mamori.so"
	}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
		"arm": "arm-linux-gnueabihf"}[arch]
	if triplet == "" {
		triplet = arch + "-linux-gnu"
	}
	return "/usr/lib/" + triplet + "/security/pam_mamori.so"
}

// Linux is what goes into the deb and rpm.
type Linux struct {
	// Version is the build version (see Versions).
	Version string
	// Arch is the Go architecture (amd64, arm64).
	Arch string
	// Agent is the linux mamori-agent binary.
	Agent string
	// UdevRule is the media control's rule (installer/udev/60-mamori-media.rules).
	UdevRule string
	// PAMModule is pam_mamori.so built for Arch (`make pam`, gcc).
	PAMModule string
	// WorkDir receives the embedded assets (unit, scripts) for nfpm to read.
	WorkDir string
}

// info builds the nfpm description for format ("deb" or "rpm").
func (l Linux) info(format string) (*nfpm.Info, error) {
	if err := needFile("agent binary", l.Agent); err != nil {
		return nil, err
	}
	if err := needFile("udev rule", l.UdevRule); err != nil {
		return nil, err
	}
	if err := needFile("pam_mamori.so (make pam)", l.PAMModule); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.WorkDir, "linux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	so, err := os.ReadFile(l.PAMModule)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(so)
	if err := os.WriteFile(filepath.Join(dir, "pam_mamori.so.sha256"), []byte(hex.EncodeToString(sum[:])+"  pam_mamori.so\n"), 0o644); err != nil {
		return nil, err
	}
	for _, name := range []string{"mamori-agent.service", "mamori-isolation-boot.service", "postinst.sh", "prerm.sh", "postrm.sh",
		"pam-configs-mamori", "debconf-templates", "debconf-config.sh", "copyright", "lintian-overrides"} {
		b, err := fs.ReadFile(assets, "linux/"+name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			return nil, err
		}
	}
	arch := l.Arch
	if arch == "" {
		arch = "amd64"
	}
	pkgVersion, _ := Versions(l.Version)
	// The manual page and the changelog, gzip -9n as Debian wants them
	// (no name, no time stamp: reproducible).
	man, err := fs.ReadFile(assets, "linux/mamori-agent.8")
	if err != nil {
		return nil, err
	}
	changelog := fmt.Sprintf("%s (%s) stable; urgency=medium\n\n  * Release %s (docs/ in the source tree has the details).\n\n -- %s  %s\n",
		Name, pkgVersion, pkgVersion, Maintainer, buildTime().Format(time.RFC1123Z))
	for name, b := range map[string][]byte{"mamori-agent.8.gz": man, "changelog.gz": []byte(changelog)} {
		gz, err := gzipN(b)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), gz, 0o644); err != nil {
			return nil, err
		}
	}
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	contents := files.Contents{
		file(l.Agent, AgentPath, 0o755),
		file(filepath.Join(dir, "mamori-agent.service"), UnitPath, 0o644),
		file(filepath.Join(dir, "mamori-isolation-boot.service"), BootUnitPath, 0o644),
		file(l.UdevRule, UdevRulePath, 0o644),
		// Installed, never enabled by the package (see agent/loginmfa).
		file(l.PAMModule, PAMModulePath(format, arch), 0o644),
		file(filepath.Join(dir, "pam_mamori.so.sha256"), PAMHashPath, 0o644),
	}
	// The manual page, copyright and changelog are documentation: rpm marks
	// them %doc (rpmlint: not-listed-as-documentation), so an
	// install with --excludedocs leaves them out; dpkg has no such flag.
	docType := func(t string) string {
		if format == "rpm" {
			return t
		}
		return ""
	}
	for _, d := range []struct{ src, dst, typ string }{
		{"mamori-agent.8.gz", ManPath, files.TypeRPMDoc},
		{"copyright", DocDir + "/copyright", files.TypeRPMDoc},
		{"changelog.gz", DocDir + "/changelog.gz", files.TypeRPMDoc},
	} {
		c := file(filepath.Join(dir, d.src), d.dst, 0o644)
		c.Type = docType(d.typ)
		contents = append(contents, c)
	}
	if format == "rpm" {
		// The rpm owns its own directories (rpmlint: a directory nobody owns).
		for _, d := range []string{"/usr/share/mamori-agent", DocDir} {
			contents = append(contents, &files.Content{Type: files.TypeDir, Destination: d,
				FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755}})
		}
	}
	if format == "deb" {
		contents = append(contents, file(filepath.Join(dir, "pam-configs-mamori"), PAMProfilePath, 0o644),
			// Each override says why (lintian prints the comments).
			file(filepath.Join(dir, "lintian-overrides"), "/usr/share/lintian/overrides/"+Name, 0o644))
	}
	info := &nfpm.Info{
		Name: Name, Arch: arch, Platform: "linux", Version: pkgVersion, VersionSchema: "none",
		Maintainer: Maintainer, Vendor: Manufacturer, Homepage: Homepage, License: License,
		Section: "admin", Priority: "optional",
		Description: Description + ".\nEnforces removable-media, MFA and network-isolation controls and reports\nthem to mamori-server. Enrols itself from /etc/default/mamori-agent.",
		Overridables: nfpm.Overridables{
			Recommends: []string{"systemd", "udev"},
			// pam_mamori.so links libc and libpam (GLIBC_2.33 is the newest
			// symbol version it uses); the maintainer scripts are sh, and
			// the .deb's postinst talks to debconf. The agent itself is a
			// static Go binary.
			Depends:  dependsFor(format),
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(dir, "postinst.sh"),
				PreRemove:   filepath.Join(dir, "prerm.sh"),
				PostRemove:  filepath.Join(dir, "postrm.sh"),
			},
		},
	}
	if format == "rpm" {
		// rpmlint: the summary is a capitalised phrase without a full stop,
		// the (deprecated, still checked) Group tag is set, and the package
		// has a %changelog with a name; nfpm makes it from a chglog file.
		info.RPM.Summary = RPMSummary
		info.RPM.Group = "System Environment/Daemons"
		chg := filepath.Join(dir, "changelog.yaml")
		entry := fmt.Sprintf("- semver: %q\n  date: %s\n  packager: %q\n  changes:\n    - commit: \"\"\n      note: %q\n",
			pkgVersion+"-1", buildTime().Format(time.RFC3339), Maintainer, "Release "+pkgVersion+" (docs/ in the source tree has the details).")
		if err := os.WriteFile(chg, []byte(entry), 0o644); err != nil {
			return nil, err
		}
		info.Changelog = chg
	}
	if format == "deb" {
		// debconf: silent enrolment from a preseed (docs/deploy.md).
		info.Deb.Scripts.Templates = filepath.Join(dir, "debconf-templates")
		info.Deb.Scripts.Config = filepath.Join(dir, "debconf-config.sh")
	}
	return nfpm.WithDefaults(info), nil
}

// Deb writes the .deb to w.
func (l Linux) Deb(w io.Writer) error {
	info, err := l.info("deb")
	if err != nil {
		return fmt.Errorf("deb: %w", err)
	}
	if err := deb.Default.Package(info, w); err != nil {
		return fmt.Errorf("deb: %w", err)
	}
	return nil
}

// RPM writes the .rpm to w.
func (l Linux) RPM(w io.Writer) error {
	info, err := l.info("rpm")
	if err != nil {
		return fmt.Errorf("rpm: %w", err)
	}
	if err := rpm.DefaultRPM.Package(info, w); err != nil {
		return fmt.Errorf("rpm: %w", err)
	}
	return nil
}

// dependsFor is the package's hard dependencies: Depends (deb), Requires (rpm).
func dependsFor(format string) []string {
	// libargon2: pam_mamori.so loads it (dlopen) to check argon2id
	// recovery codes from the break-glass file while the agent is down.
	// dlopen is invisible to rpm's automatic dependencies, so the .rpm
	// requires the library's soname, which the distribution's package
	// provides (rpmlint refuses a dependency on the package by name).
	if format == "rpm" {
		return []string{"/bin/sh", "glibc >= 2.33", "pam", "libargon2.so.1()(64bit)"}
	}
	return []string{"libc6 (>= 2.33)", "libpam0g (>= 0.99.7.1)", "libargon2-1", "debconf (>= 0.5) | debconf-2.0"}
}

// gzipN compresses b as `gzip -9n` does.
func gzipN(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildTime is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func buildTime() time.Time {
	if n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(n, 0).UTC()
	}
	return time.Now().UTC()
}
