package packaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/credprov"
)

// ServiceName is the Windows service's name (the same as agent/svc.Name).
const ServiceName = "mamori-agent"

// SecureProperties are the MSI's SecureCustomProperties: MajorUpgrade's
// (written by wixl) and the three public properties.
const SecureProperties = "WIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;SERVER;TOKEN;CA_FINGERPRINT"

// WXS is what the WiX template needs. Every field is used; a missing one
// is a template error (missingkey=error applies to maps; for a struct,
// text/template fails on an unknown field name).
type WXS struct {
	Version                  string // MSI ProductVersion, "1.2.3"
	Manufacturer             string
	UpgradeCode              string
	AgentComponentGUID       string
	SettingsComponentGUID    string
	EventSourceComponentGUID string
	AgentExe                 string // path of mamori-agent.exe on the build machine
	AgentExeName             string // its name in the wixl work directory (wixl wants relative sources)
	CredProvComponentGUID    string
	CredProvDLL              string // path of mamori-cp.dll on the build machine (make credprov)
	CredProvDLLName          string // its installed name, next to the agent
	CredProvSHA256           string // its SHA-256, recorded for the login-mfa control (BuildMSI fills it)
	RegistryCredProvSHA256   string
	ServiceName              string
	RegistryKey              string
	RegistryServer           string
	RegistryToken            string
	RegistryCAFingerprint    string
}

// CredProvSHA256Value is where the MSI records the DLL's SHA-256
// (HKLM\SOFTWARE\mamori; agent/loginmfa reads it).
const CredProvSHA256Value = "CredentialProviderSHA256"

// NewWXS fills WXS for an agent binary, the credential provider DLL and a
// build version.
func NewWXS(agentExe, credProvDLL, version string) WXS {
	_, msiVersion := Versions(version)
	return WXS{
		Version: msiVersion, Manufacturer: Manufacturer, UpgradeCode: UpgradeCode,
		AgentComponentGUID: agentComponentGUID, SettingsComponentGUID: settingsComponentGUID,
		EventSourceComponentGUID: eventSourceComponentGUID, CredProvComponentGUID: credProvComponentGUID,
		CredProvDLL: credProvDLL, CredProvDLLName: credprov.DLLName, RegistryCredProvSHA256: CredProvSHA256Value,
		AgentExe: agentExe, AgentExeName: "mamori-agent.exe", ServiceName: ServiceName,
		RegistryKey: config.RegistryKey, RegistryServer: config.RegistryServer,
		RegistryToken: config.RegistryToken, RegistryCAFingerprint: config.RegistryCAFingerprint,
	}
}

// RenderWXS renders the WiX source and checks that it is well-formed XML.
// Values are XML-escaped.
func RenderWXS(p WXS) ([]byte, error) {
	src, err := assets.ReadFile("windows/mamori-agent.wxs.tmpl")
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("wxs").Option("missingkey=error").Funcs(template.FuncMap{}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("wix template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, escaped(p)); err != nil {
		return nil, fmt.Errorf("wix template: %w", err)
	}
	if err := checkXML(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("rendered wix source: %w", err)
	}
	return buf.Bytes(), nil
}

// escaped XML-escapes every field (a path or version must not break out
// of its attribute).
func escaped(p WXS) WXS {
	e := func(s string) string {
		var b strings.Builder
		xml.EscapeText(&b, []byte(s)) //nolint:errcheck // strings.Builder does not fail
		return b.String()
	}
	return WXS{e(p.Version), e(p.Manufacturer), e(p.UpgradeCode), e(p.AgentComponentGUID), e(p.SettingsComponentGUID), e(p.EventSourceComponentGUID),
		e(p.AgentExe), e(p.AgentExeName), e(p.CredProvComponentGUID), e(p.CredProvDLL), e(p.CredProvDLLName), e(p.CredProvSHA256),
		e(p.RegistryCredProvSHA256), e(p.ServiceName), e(p.RegistryKey), e(p.RegistryServer), e(p.RegistryToken), e(p.RegistryCAFingerprint)}
}

func checkXML(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return nil
			}
			return err
		}
	}
}

// BuildMSI renders the WiX source into workDir and builds out with
// wixl -a x64.
func BuildMSI(ctx context.Context, p WXS, workDir, out string) error {
	if err := needFile("windows agent binary", p.AgentExe); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	if err := needFile("credential provider DLL (make credprov)", p.CredProvDLL); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	dll, err := os.ReadFile(p.CredProvDLL)
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	sum := sha256.Sum256(dll)
	p.CredProvSHA256 = hex.EncodeToString(sum[:])
	wixl, err := lookTool("wixl", "wixl")
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	src, err := RenderWXS(p)
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	if err := os.WriteFile(filepath.Join(workDir, "mamori-agent.wxs"), src, 0o644); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	exe, err := os.ReadFile(p.AgentExe)
	if err == nil {
		err = os.WriteFile(filepath.Join(workDir, p.AgentExeName), exe, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(workDir, p.CredProvDLLName), dll, 0o644)
	}
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	if out, err = filepath.Abs(out); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	cmd := exec.CommandContext(ctx, wixl, "-a", "x64", "-o", out, "mamori-agent.wxs")
	cmd.Dir = workDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("msi: wixl -a x64 -o %s mamori-agent.wxs: %w\n%s", out, err, b)
	}
	// wixl writes SecureCustomProperties for MajorUpgrade's properties and
	// has no way to add ours.
	msibuild, err := lookTool("msibuild", "msitools")
	if err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	q := "UPDATE `Property` SET `Value` = '" + SecureProperties + "' WHERE `Property` = 'SecureCustomProperties'"
	if err := run(ctx, msibuild, out, "-q", q); err != nil {
		return fmt.Errorf("msi: %w", err)
	}
	return nil
}
