package packaging

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/agent/cli"
	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/internal/testenv"
)

// parseUnit reads a systemd unit file: section → key → values (repeated
// keys and space-separated lists accumulate, as systemd does for the
// dependency keys).
func parseUnit(t *testing.T, b []byte) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			sec = line[1 : len(line)-1]
			out[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("line %d: %q is not KEY=VALUE inside a section", n, line)
			}
			out[sec][strings.TrimSpace(k)] = append(out[sec][strings.TrimSpace(k)], strings.Fields(v)...)
		}
	}
	return out
}

// The isolation boot unit loads the last ruleset before any network is
// configured. systemd is not running here: the unit is checked by parsing
// it, and the loading itself by agent/isolation's TestBoot.
func TestBootUnit(t *testing.T) {
	b, err := fs.ReadFile(assets, "linux/mamori-isolation-boot.service")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, b)
	has := func(sec, key, val string) {
		t.Helper()
		if !slices.Contains(u[sec][key], val) {
			t.Errorf("[%s] %s = %q, want it to include %q", sec, key, u[sec][key], val)
		}
	}
	// Early: no default dependencies (they would order it after
	// basic.target, long after the network), before network-pre.target
	// and pulling it in, as Debian's nftables.service does.
	has("Unit", "DefaultDependencies", "no")
	has("Unit", "Before", "network-pre.target")
	has("Unit", "Wants", "network-pre.target")
	has("Unit", "RequiresMountsFor", config.DefaultStateDir) // where the ruleset is kept
	for _, k := range []string{"After", "Requires", "Wants"} {
		for _, v := range u["Unit"][k] {
			if strings.HasPrefix(v, "network") && v != "network-pre.target" {
				t.Errorf("[Unit] %s=%s: the unit must not wait for the network it protects", k, v)
			}
		}
	}
	has("Service", "Type", "oneshot")
	has("Service", "RemainAfterExit", "yes")
	has("Install", "WantedBy", "sysinit.target")
	start := u["Service"]["ExecStart"]
	if len(start) < 2 || start[0] != AgentPath {
		t.Fatalf("ExecStart %q, want %s …", start, AgentPath)
	}
	if inv, err := cli.Parse(start[1:]); err != nil || inv.Command != "isolation-boot" {
		t.Errorf("ExecStart arguments %q: mamori-agent parses them as %q, %v", start[1:], inv.Command, err)
	}

	// Packaged where systemd looks, and enabled by postinst.
	dir := t.TempDir()
	dummy := filepath.Join(dir, "x")
	if err := os.WriteFile(dummy, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := Linux{Version: "v1.0.0", Agent: dummy, UdevRule: dummy, PAMModule: dummy, WorkDir: dir}
	for _, format := range []string{"deb", "rpm"} {
		info, err := l.info(format)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range info.Contents {
			if c.Destination == BootUnitPath {
				got, _ := os.ReadFile(c.Source)
				found = bytes.Equal(got, b)
			}
		}
		if !found {
			t.Errorf("%s: %s not packaged with the unit's content", format, BootUnitPath)
		}
	}
	// systemd's own reading of it (offline, in a root the test lays out).
	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze := testenv.LookPath(t, "systemd-analyze", "systemd")
		root := t.TempDir()
		unitDir := filepath.Join(root, filepath.Dir(BootUnitPath))
		for _, d := range []string{unitDir, filepath.Join(root, filepath.Dir(AgentPath))} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, AgentPath), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unitDir, filepath.Base(BootUnitPath)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", "--root="+root, filepath.Base(BootUnitPath)).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	post, _ := fs.ReadFile(assets, "linux/postinst.sh")
	if !strings.Contains(string(post), "systemctl enable mamori-isolation-boot.service") {
		t.Error("postinst does not enable mamori-isolation-boot.service")
	}
}
