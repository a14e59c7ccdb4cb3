package packaging

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
)

func TestVersions(t *testing.T) {
	tests := []struct{ in, pkg, msi string }{
		{"v1.2.3", "1.2.3", "1.2.3"},
		{"v1.2.3-4-gabcdef0", "1.2.3-4-gabcdef0", "1.2.3"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3-4-gabcdef0-dirty", "1.2.3"},
		{"60d412b-dirty", "0.0.0~git60d412b.dirty", "0.0.0"},
		{"dev", "0.0.0~gitdev", "0.0.0"},
		{"", "0.0.0~git", "0.0.0"},
	}
	for _, tt := range tests {
		pkg, msi := Versions(tt.in)
		if pkg != tt.pkg || msi != tt.msi {
			t.Errorf("Versions(%q) = %q, %q; want %q, %q", tt.in, pkg, msi, tt.pkg, tt.msi)
		}
	}
}

// wix is the part of the WiX schema the test checks.
type wix struct {
	Product struct {
		Version     string `xml:"Version,attr"`
		UpgradeCode string `xml:"UpgradeCode,attr"`
		Properties  []struct {
			ID    string `xml:"Id,attr"`
			Value string `xml:"Value,attr"`
		} `xml:"Property"`
		MajorUpgrade *struct{} `xml:"MajorUpgrade"`
		Components   []struct {
			ID   string `xml:"Id,attr"`
			GUID string `xml:"Guid,attr"`
			File *struct {
				Name   string `xml:"Name,attr"`
				Source string `xml:"Source,attr"`
			} `xml:"File"`
			ServiceInstall *struct {
				Name      string `xml:"Name,attr"`
				Start     string `xml:"Start,attr"`
				Account   string `xml:"Account,attr"`
				Arguments string `xml:"Arguments,attr"`
			} `xml:"ServiceInstall"`
			ServiceControl *struct {
				Start string `xml:"Start,attr"`
				Stop  string `xml:"Stop,attr"`
			} `xml:"ServiceControl"`
			RegistryValue *struct {
				Key   string `xml:"Key,attr"`
				Name  string `xml:"Name,attr"`
				Value string `xml:"Value,attr"`
			} `xml:"RegistryValue"`
			RegistryKey *struct {
				Root   string `xml:"Root,attr"`
				Key    string `xml:"Key,attr"`
				Values []struct {
					Name  string `xml:"Name,attr"`
					Value string `xml:"Value,attr"`
				} `xml:"RegistryValue"`
			} `xml:"RegistryKey"`
		} `xml:"Directory>Directory>Directory>Component"`
		Settings []struct {
			ID          string `xml:"Id,attr"`
			RegistryKey struct {
				Key    string `xml:"Key,attr"`
				Values []struct {
					Name  string `xml:"Name,attr"`
					Value string `xml:"Value,attr"`
				} `xml:"RegistryValue"`
			} `xml:"RegistryKey"`
		} `xml:"Directory>Component"`
	}
}

func TestRenderWXS(t *testing.T) {
	w0 := NewWXS(`C:\build\mamori-agent.exe`, `C:\build\mamori-cp.dll`, "v1.4.2-3-gabc")
	w0.CredProvSHA256 = strings.Repeat("ab", 32)
	src, err := RenderWXS(w0)
	if err != nil {
		t.Fatal(err)
	}
	var w wix
	if err := xml.Unmarshal(src, &w); err != nil {
		t.Fatalf("rendered WiX does not parse: %v\n%s", err, src)
	}
	p := w.Product
	if p.Version != "1.4.2" || p.UpgradeCode != UpgradeCode || p.MajorUpgrade == nil {
		t.Errorf("version %q, upgrade code %q, major upgrade %v", p.Version, p.UpgradeCode, p.MajorUpgrade != nil)
	}
	props := map[string]string{}
	for _, pr := range p.Properties {
		props[pr.ID] = pr.Value
	}
	for _, id := range []string{"SERVER", "TOKEN", "CA_FINGERPRINT"} {
		if _, ok := props[id]; !ok {
			t.Errorf("public property %s not declared", id)
		}
	}
	if props["MsiHiddenProperties"] != "TOKEN" {
		t.Errorf("MsiHiddenProperties = %q, want TOKEN (kept out of msiexec logs)", props["MsiHiddenProperties"])
	}
	if len(p.Components) != 2 || p.Components[0].ServiceInstall == nil || p.Components[0].File == nil {
		t.Fatalf("agent component: %+v", p.Components)
	}
	if cp := p.Components[1]; cp.File == nil || cp.File.Name != "mamori-cp.dll" || cp.RegistryValue == nil ||
		cp.RegistryValue.Key != `SOFTWARE\mamori` || cp.RegistryValue.Name != CredProvSHA256Value || cp.RegistryValue.Value != w0.CredProvSHA256 {
		t.Errorf("credential provider component: %+v", cp)
	}
	if !strings.Contains(string(src), `<Directory Id="InstallDir" Name="mamori">`) || strings.Contains(string(src), `Id="INSTALLDIR"`) {
		t.Error("the install directory must be a private property (InstallDir), not a public one settable from msiexec's command line")
	}
	if !strings.Contains(string(src), `ExeCommand="credprov-remove"`) || !strings.Contains(string(src), `REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE`) {
		t.Error("uninstall does not unregister the credential provider first")
	}
	c := p.Components[0]
	if c.File.Name != "mamori-agent.exe" || c.ServiceInstall.Name != ServiceName || c.ServiceInstall.Start != "auto" ||
		c.ServiceInstall.Account != "LocalSystem" || c.ServiceInstall.Arguments != "run" {
		t.Errorf("service: file %+v install %+v", c.File, c.ServiceInstall)
	}
	if c.ServiceControl == nil || c.ServiceControl.Start != "install" || c.ServiceControl.Stop != "both" {
		t.Errorf("service control %+v: want started on install, stopped on upgrade and uninstall", c.ServiceControl)
	}
	got := map[string]string{}
	for _, s := range p.Settings {
		for _, v := range s.RegistryKey.Values {
			got[s.RegistryKey.Key+`\`+v.Name] = v.Value
		}
	}
	want := map[string]string{
		`SOFTWARE\mamori\Server`:        "[SERVER]",
		`SOFTWARE\mamori\Token`:         "[TOKEN]",
		`SOFTWARE\mamori\CAFingerprint`: "[CA_FINGERPRINT]",
		`SYSTEM\CurrentControlSet\Services\EventLog\Application\mamori-agent\EventMessageFile`: "[System64Folder]EventCreate.exe",
		`SYSTEM\CurrentControlSet\Services\EventLog\Application\mamori-agent\TypesSupported`:   "7",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("registry values (-want +got):\n%s", d)
	}
}

// The GUIDs that identify the product to Windows must never change.
func TestStableGUIDs(t *testing.T) {
	got := []string{UpgradeCode, agentComponentGUID, settingsComponentGUID, eventSourceComponentGUID, credProvComponentGUID}
	want := []string{"B21F34B4-6931-4146-8EF7-67265DD5C150", "D9AC59DF-C012-43FD-8626-9FFD2D62161A",
		"28EBC503-71D2-4369-A046-F285C12B1722", "6F0B7C3E-2A51-4E8D-9C47-3D1B8E5A9F20", "3E6A1C52-8F0D-4B7A-A1E4-5C9D2B70F613"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("a product or component GUID changed; upgrades in place break (-want +got):\n%s", d)
	}
}

func TestRenderWXSEscapes(t *testing.T) {
	p := NewWXS(`C:\a "b" & <c>\mamori-agent.exe`, `C:\x.dll`, "v1.0.0")
	p.Manufacturer = `"><Evil/>&`
	src, err := RenderWXS(p)
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Product struct {
			Manufacturer string `xml:"Manufacturer,attr"`
		}
	}
	if err := xml.Unmarshal(src, &w); err != nil || w.Product.Manufacturer != p.Manufacturer {
		t.Errorf("manufacturer round trip = %q, %v; want %q", w.Product.Manufacturer, err, p.Manufacturer)
	}
}

// The template names only fields WXS has, and missingkey=error turns a
// typo in a map-driven render into an error rather than "<no value>".
func TestTemplateFieldsExist(t *testing.T) {
	src, _ := assets.ReadFile("windows/mamori-agent.wxs.tmpl")
	tmpl := template.Must(template.New("wxs").Option("missingkey=error").Parse(string(src)))
	if err := tmpl.Execute(&bytes.Buffer{}, map[string]string{"Version": "1.0.0"}); err == nil {
		t.Error("rendering with missing values succeeded; want a missingkey error")
	}
	if strings.Contains(string(src), "<no value>") {
		t.Error("template holds <no value>")
	}
}

func TestLinuxNeedsInputs(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "mamori-agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	l := Linux{Version: "v1.0.0", Agent: agent, UdevRule: filepath.Join(dir, "missing.rules"), WorkDir: dir}
	if err := l.Deb(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "udev rule") {
		t.Errorf("deb without the udev rule: %v; want an error naming it", err)
	}
	l.UdevRule = agent // any file will do here
	for name, build := range map[string]func(io.Writer) error{"deb": l.Deb, "rpm": l.RPM} {
		if err := build(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "pam_mamori.so (make pam)") {
			t.Errorf("%s without pam_mamori.so: %v; want an error naming it", name, err)
		}
	}
}

func TestPAMModulePath(t *testing.T) {
	for _, tt := range []struct{ format, arch, want string }{
		{"deb", "amd64", "/usr/lib/x86_64-linux-gnu/security/pam_mamori.so"},
		{"deb", "arm64", "/usr/lib/aarch64-linux-gnu/security/pam_mamori.so"},
		{"rpm", "amd64", "/usr/lib64/security/pam_mamori.so"},
		{"rpm", "arm64", "/usr/lib64/security/pam_mamori.so"},
	} {
		if got := PAMModulePath(tt.format, tt.arch); got != tt.want {
			t.Errorf("PAMModulePath(%s, %s) = %s; want %s", tt.format, tt.arch, got, tt.want)
		}
	}
}
