package packaging

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// Installed paths on Linux.
const (
	AgentPath    = "/usr/sbin/mamori-agent"
	UnitPath     = "/usr/lib/systemd/system/mamori-agent.service"
	UdevRulePath = "/usr/lib/udev/rules.d/60-mamori-media.rules"
	DocDir       = "/usr/share/doc/mamori-agent"
)

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
	// WorkDir receives the embedded assets (unit, scripts) for nfpm to read.
	WorkDir string
}

// info builds the nfpm description shared by deb and rpm.
func (l Linux) info() (*nfpm.Info, error) {
	if err := needFile("agent binary", l.Agent); err != nil {
		return nil, err
	}
	if err := needFile("udev rule", l.UdevRule); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.WorkDir, "linux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, name := range []string{"mamori-agent.service", "postinst.sh", "prerm.sh", "postrm.sh"} {
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
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	info := &nfpm.Info{
		Name: Name, Arch: arch, Platform: "linux", Version: pkgVersion, VersionSchema: "none",
		Maintainer: Maintainer, Vendor: Manufacturer, Homepage: Homepage, License: License,
		Section: "admin", Priority: "optional",
		Description: Description + ".\nEnforces removable-media, MFA and network-isolation controls and reports\nthem to mamori-server. Enrols itself from /etc/default/mamori-agent.",
		Overridables: nfpm.Overridables{
			Recommends: []string{"systemd", "udev"},
			Contents: files.Contents{
				file(l.Agent, AgentPath, 0o755),
				file(filepath.Join(dir, "mamori-agent.service"), UnitPath, 0o644),
				file(l.UdevRule, UdevRulePath, 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(dir, "postinst.sh"),
				PreRemove:   filepath.Join(dir, "prerm.sh"),
				PostRemove:  filepath.Join(dir, "postrm.sh"),
			},
		},
	}
	return nfpm.WithDefaults(info), nil
}

// Deb writes the .deb to w.
func (l Linux) Deb(w io.Writer) error {
	info, err := l.info()
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
	info, err := l.info()
	if err != nil {
		return fmt.Errorf("rpm: %w", err)
	}
	if err := rpm.DefaultRPM.Package(info, w); err != nil {
		return fmt.Errorf("rpm: %w", err)
	}
	return nil
}
