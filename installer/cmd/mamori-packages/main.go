// Command mamori-packages builds mamori-agent's installers (`make
// packages`): .deb and .rpm from a linux agent binary, the .msi from a
// windows one, and Authenticode-signs the agent .exe and the MSI when a
// certificate is given.
// The work is in installer/packaging.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mamori-dev/mamori/installer/packaging"
)

func main() {
	var (
		version  = flag.String("version", "dev", "build version (git describe)")
		out      = flag.String("out", "bin/packages", "output directory")
		linux    = flag.String("linux-agent", "", "linux/amd64 mamori-agent binary")
		windows  = flag.String("windows-agent", "", "windows/amd64 mamori-agent.exe")
		credProv = flag.String("credential-provider", "bin/windows-amd64/mamori-cp.dll", "mamori-cp.dll, the Windows credential provider (make credprov)")
		udevRule = flag.String("udev-rule", "installer/udev/60-mamori-media.rules", "the media control's udev rule")
		pamMod   = flag.String("pam-module", "bin/pam_mamori.so", "pam_mamori.so built for linux/amd64 (make pam)")
		formats  = flag.String("formats", "deb,rpm,msi", "comma-separated: deb, rpm, msi")
		cert     = flag.String("sign-cert", "", "PEM certificate (chain) for Authenticode signing of the MSI; optional")
		key      = flag.String("sign-key", "", "PEM private key for -sign-cert")
	)
	flag.Parse()
	if err := run(context.Background(), *version, *out, *linux, *windows, *credProv, *udevRule, *pamMod, *formats, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "mamori-packages:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, version, out, linux, windows, credProv, udevRule, pamModule, formats, cert, key string) error {
	if (cert == "") != (key == "") {
		return fmt.Errorf("give both -sign-cert and -sign-key, or neither")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mamori-packages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	pkgVersion, _ := packaging.Versions(version)
	l := packaging.Linux{Version: version, Arch: "amd64", Agent: linux, UdevRule: udevRule, PAMModule: pamModule, WorkDir: work}
	for _, f := range strings.Split(formats, ",") {
		var path string
		switch f = strings.TrimSpace(f); f {
		case "deb", "rpm":
			// Each format's own file name: NAME_VERSION_ARCH.deb (dpkg),
			// NAME-VERSION-RELEASE.ARCH.rpm (rpmlint: non-coherent-filename).
			path = filepath.Join(out, fmt.Sprintf("%s_%s_amd64.deb", packaging.Name, pkgVersion))
			if f == "rpm" {
				path = filepath.Join(out, fmt.Sprintf("%s-%s-1.x86_64.rpm", packaging.Name, pkgVersion))
			}
			w, err := os.Create(path)
			if err != nil {
				return err
			}
			build := l.Deb
			if f == "rpm" {
				build = l.RPM
			}
			err = build(w)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case "msi":
			path = filepath.Join(out, packaging.Name+".msi")
			exe, dll := windows, credProv
			if cert != "" { // sign the agent and the DLL inside the MSI too
				exe, dll = filepath.Join(work, "signed-mamori-agent.exe"), filepath.Join(work, "signed-mamori-cp.dll")
				if err := packaging.Sign(ctx, cert, key, windows, exe); err != nil {
					return err
				}
				if err := packaging.Sign(ctx, cert, key, credProv, dll); err != nil {
					return err
				}
			}
			if err := packaging.BuildMSI(ctx, packaging.NewWXS(exe, dll, version), work, path); err != nil {
				return err
			}
			if cert != "" {
				unsigned := filepath.Join(work, "unsigned.msi")
				if err := os.Rename(path, unsigned); err != nil {
					return err
				}
				if err := packaging.Sign(ctx, cert, key, unsigned, path); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("unknown format %q: use deb, rpm or msi", f)
		}
		fmt.Println(path)
	}
	return nil
}
