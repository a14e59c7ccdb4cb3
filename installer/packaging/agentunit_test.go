package packaging

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestAgentUnitSandbox: mamori-agent.service carries the hardening issue 21
// asks for, every directive it leaves out is written down with the reason,
// and systemd's own scoring (systemd-analyze security --offline) puts its
// exposure at 4.0 or below.
func TestAgentUnitSandbox(t *testing.T) {
	b, err := fs.ReadFile(assets, "linux/mamori-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, b)
	svc := u["Service"]
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectClock": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
		"MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "ProtectSystem": "strict",
		"RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "ProtectControlGroups": "yes", "UMask": "0077",
	} {
		if got := strings.Join(svc[k], " "); got != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	if got := strings.Join(svc["RestrictAddressFamilies"], " "); got != "AF_UNIX AF_INET AF_INET6 AF_NETLINK" {
		t.Errorf("RestrictAddressFamilies=%q", got)
	}
	// Exactly the capabilities the controls use (the unit's comment says which for what).
	if got := strings.Join(svc["CapabilityBoundingSet"], " "); got != "CAP_SYS_ADMIN CAP_NET_ADMIN CAP_DAC_OVERRIDE CAP_CHOWN CAP_FOWNER CAP_SYS_PTRACE" {
		t.Errorf("CapabilityBoundingSet=%q", got)
	}
	for _, p := range []string{"/var/lib/mamori", "/etc"} {
		if !strings.Contains(strings.Join(svc["ReadWritePaths"], " "), p) {
			t.Errorf("ReadWritePaths lacks %s", p)
		}
	}
	// Every hardening directive not set is explained in the unit.
	for _, k := range []string{"PrivateDevices", "ProtectKernelTunables", "PrivateNetwork", "IPAddressDeny", "PrivateUsers", "DynamicUser", "ProtectProc", "ProcSubset"} {
		if _, set := svc[k]; set {
			continue
		}
		if !regexp.MustCompile(`(?m)^#.*\b` + k + `=`).Match(b) {
			t.Errorf("%s= is neither set nor explained in a comment", k)
		}
	}

	sa := testenv.LookPath(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	unit := filepath.Join(dir, "mamori-agent.service")
	if err := os.WriteFile(unit, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "security", "--offline=true", "--threshold=40", "--no-pager", unit)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for mamori-agent.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline: exposure %.1f (was 9.6 before issue 21)", score)
	if score > 4.0 || err != nil {
		t.Fatalf("exposure %.1f, want ≤ 4.0 (exit %v)\n%s", score, err, out)
	}
}
