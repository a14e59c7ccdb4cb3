package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// TestRegistryLayer writes HKLM\SOFTWARE\mamori as the MSI does and checks
// the precedence flags > environment > registry > file, and that reading
// narrows the key's ACL. It runs under wine (wine_linux_test.go sets
// MAMORI_CONFIG_REGISTRY_LIVE=1), never on a developer's Windows machine.
func TestRegistryLayer(t *testing.T) {
	if os.Getenv("MAMORI_CONFIG_REGISTRY_LIVE") != "1" {
		t.Skip("writes HKLM\\SOFTWARE\\mamori: runs under wine (wine_linux_test.go)")
	}
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, RegistryKey, registry.SET_VALUE|registry.WOW64_64KEY)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{RegistryServer: "reg.example:8443", RegistryToken: "mme_reg", RegistryCAFingerprint: ""} {
		if err := k.SetStringValue(name, v); err != nil {
			t.Fatal(err)
		}
	}
	k.Close()
	defer registry.DeleteKey(registry.LOCAL_MACHINE, RegistryKey)

	// Not t.TempDir: wine's unlinkat fails its clean-up.
	dir, err := os.MkdirTemp("", "mamori-config-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "agent.json")
	os.WriteFile(file, []byte(`{"server":"file.example:8443","token":"mme_file"}`), 0o600)
	noEnv := func(string) string { return "" }

	c, err := Resolve(file, false, noEnv, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Servers[0] != "reg.example:8443" || c.Token != "mme_reg" {
		t.Errorf("registry over file: servers %v token %q; want the registry's", c.Servers, c.Token.Reveal())
	}
	env := func(k string) string {
		if k == EnvServer {
			return "env.example:8443"
		}
		return ""
	}
	c, err = Resolve(file, false, env, Overrides{Token: "mme_flag"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Servers[0] != "env.example:8443" || c.Token != "mme_flag" {
		t.Errorf("env and flags over registry: servers %v token %q", c.Servers, c.Token.Reveal())
	}

	// Once enrolled the agent forgets the token: the Token value goes,
	// Server stays.
	if err := ForgetToken(""); err != nil {
		t.Fatalf("ForgetToken: %v", err)
	}
	rk, err := registry.OpenKey(registry.LOCAL_MACHINE, RegistryKey, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rk.GetStringValue(RegistryToken); err != registry.ErrNotExist {
		t.Errorf("Token value after ForgetToken: %v, want gone", err)
	}
	if v, _, _ := rk.GetStringValue(RegistryServer); v != "reg.example:8443" {
		t.Errorf("Server value after ForgetToken: %q", v)
	}
	rk.Close()
	if err := ForgetToken(""); err != nil {
		t.Fatalf("ForgetToken twice: %v", err)
	}

	// Reading narrowed the ACL: SYSTEM and Administrators, not inherited.
	if err := ProtectRegistryKey(); err != nil {
		t.Fatalf("ProtectRegistryKey: %v", err)
	}
	sd, err := windows.GetNamedSecurityInfo(`MACHINE\`+RegistryKey, windows.SE_REGISTRY_KEY, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	// Wine does not report the protected flag (D:P) back; the ACEs are
	// what matters: only SYSTEM (SY) and Administrators (BA).
	sddl := sd.String()
	aces := strings.Split(strings.TrimPrefix(strings.TrimPrefix(sddl, "D:"), "P"), ")")
	for _, ace := range aces {
		if ace != "" && !strings.HasSuffix(ace, ";SY") && !strings.HasSuffix(ace, ";BA") {
			t.Errorf("key DACL %s grants %s): want SYSTEM and Administrators only", sddl, ace)
		}
	}
	if !strings.Contains(sddl, ";SY)") || !strings.Contains(sddl, ";BA)") {
		t.Errorf("key DACL %s: want SYSTEM and Administrators", sddl)
	}
	t.Logf("HKLM\\%s DACL: %s", RegistryKey, sddl)
}
