// Package packaging builds mamori-agent's installers as Go code: the .deb
// and .rpm with nfpm used as a library, the MSI from a text/template WiX
// source built with wixl, and optional Authenticode signing with
// osslsigncode. cmd/mamori-packages (`make packages`) wires it.
//
// Assets (systemd unit, maintainer scripts, WiX template) are embedded;
// the agent binaries and the udev rule are inputs, so a build never
// depends on where it runs from.
package packaging

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

//go:embed linux windows
var assets embed.FS

// Package identity. UpgradeCode must never change: it is how Windows knows
// a newer MSI replaces an installed one.
const (
	Name         = "mamori-agent"
	Maintainer   = "mamori <mamori@example.lg.jp>"
	Manufacturer = "mamori"
	Homepage     = "https://github.com/mamori-dev/mamori"
	License      = "Apache-2.0"
	Description  = "mamori endpoint compliance agent for My Number tier terminals"
	// RPMSummary is the .rpm's Summary: rpmlint wants it capitalised and
	// without a full stop (Description's first line is neither).
	RPMSummary = "Endpoint compliance agent (mamori) for My Number tier terminals"

	UpgradeCode              = "B21F34B4-6931-4146-8EF7-67265DD5C150"
	agentComponentGUID       = "D9AC59DF-C012-43FD-8626-9FFD2D62161A"
	settingsComponentGUID    = "28EBC503-71D2-4369-A046-F285C12B1722"
	eventSourceComponentGUID = "6F0B7C3E-2A51-4E8D-9C47-3D1B8E5A9F20"
	credProvComponentGUID    = "3E6A1C52-8F0D-4B7A-A1E4-5C9D2B70F613"
)

var (
	numericVersionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)`)
	debVersionRE     = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)
)

// Versions turns a build version (git describe: "v1.2.3", "v1.2.3-4-gabc",
// "60d412b-dirty", "dev") into a package version (deb/rpm: starts with a
// digit) and an MSI ProductVersion (three numbers, each ≤ 255.255.65535).
func Versions(v string) (pkg, msi string) {
	if m := numericVersionRE.FindStringSubmatch(v); m != nil {
		msi = m[1] + "." + m[2] + "." + m[3]
		pkg = strings.TrimPrefix(v, "v")
	} else {
		msi = "0.0.0"
		pkg = "0.0.0~git" + regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(v, ".")
	}
	if !debVersionRE.MatchString(pkg) {
		pkg = "0.0.0"
	}
	return pkg, msi
}

// run runs a command and returns its error with the output attached.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// needFile checks that an input file exists and is a regular file.
func needFile(what, path string) error {
	if path == "" {
		return fmt.Errorf("%s: no path given", what)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", what, path)
	}
	return nil
}

var errNoTool = errors.New("tool not found")

// lookTool finds a program, saying which Debian package has it.
func lookTool(prog, debianPackage string) (string, error) {
	p, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("%w: %s (apt-get install %s)", errNoTool, prog, debianPackage)
	}
	return p, nil
}
