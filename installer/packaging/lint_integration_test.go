package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestLinters runs the distributions' own linters on the packages built
// from the real agent binary (static, stripped, with a build ID, as `make
// packages` builds it) and the real pam_mamori.so: lintian must report no
// error and no warning beyond the overrides the .deb carries (each with a
// reason, linux/lintian-overrides), rpmlint nothing beyond the filters in
// linux/rpmlint.toml (each with a reason). A missing linter skips on a
// developer's machine and fails under CI=true (installer/dev/test-deps.sh
// installs both).
func TestLinters(t *testing.T) {
	testenv.Short(t)
	lintian := testenv.LookPath(t, "lintian", "lintian")
	rpmlint := testenv.LookPath(t, "rpmlint", "rpmlint")
	dir := t.TempDir()
	agent := filepath.Join(dir, "mamori-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -B gobuildid", "-o", agent, "../../agent/cmd/mamori-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, b)
	}
	// Stripped as `make pam` strips it.
	so := filepath.Join(dir, "pam_mamori.so")
	b, err := os.ReadFile(pamModule(t))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(so, b, 0o644)
	strip := testenv.LookPath(t, "strip", "binutils")
	if b, err := exec.Command(strip, "--strip-unneeded", "--remove-section=.comment", so).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, b)
	}
	l := Linux{Version: "v1.2.3", Arch: "amd64", Agent: agent, UdevRule: udevRule, PAMModule: so, WorkDir: dir}
	var deb, rpm bytes.Buffer
	if err := l.Deb(&deb); err != nil {
		t.Fatal(err)
	}
	if err := l.RPM(&rpm); err != nil {
		t.Fatal(err)
	}
	debPath := filepath.Join(dir, "mamori-agent_1.2.3_amd64.deb")
	rpmPath := filepath.Join(dir, "mamori-agent-1.2.3-1.x86_64.rpm")
	os.WriteFile(debPath, deb.Bytes(), 0o644)
	os.WriteFile(rpmPath, rpm.Bytes(), 0o644)

	t.Run("lintian", func(t *testing.T) {
		cmd := exec.Command(lintian, "--fail-on", "error,warning", "--tag-display-limit", "0", debPath)
		b, err := cmd.CombinedOutput()
		t.Logf("lintian:\n%s", b)
		if err != nil {
			t.Fatalf("lintian failed: %v", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
				t.Errorf("lintian: %s", l)
			}
		}
	})
	t.Run("rpmlint", func(t *testing.T) {
		cmd := exec.Command(rpmlint, "-c", "linux/rpmlint.toml", rpmPath)
		b, err := cmd.CombinedOutput()
		t.Logf("rpmlint:\n%s", b)
		if err != nil {
			t.Fatalf("rpmlint failed: %v", err)
		}
		if !strings.Contains(string(b), "0 errors, 0 warnings") {
			t.Errorf("rpmlint found something (fix it, or filter it with a reason in linux/rpmlint.toml)")
		}
	})
}
