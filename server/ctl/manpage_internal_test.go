package ctl

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestManualPage keeps mamorictl(1) in step with the commands: every
// command general help lists has an entry, and man renders the page
// without a warning (when man is installed; `make deps` has it with
// lintian).
func TestManualPage(t *testing.T) {
	const page = "../cmd/mamorictl/mamorictl.1"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.ReplaceAll(string(b), `\-`, "-")
	for _, cmd := range commands {
		if !strings.Contains(src, "B "+cmd) && !strings.Contains(src, "BI \""+cmd) {
			t.Errorf("mamorictl.1 has no entry for %q", cmd)
		}
	}
	for _, flag := range []string{"--server", "--ca-file", "--ca-fingerprint", "--token", "--timeout", "MAMORI_TOKEN"} {
		if !strings.Contains(src, flag) {
			t.Errorf("mamorictl.1 does not describe %s", flag)
		}
	}
	man, err := exec.LookPath("man")
	if err != nil {
		t.Log("man not installed: rendering not checked")
		return
	}
	cmd := exec.Command(man, "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "LANG=C", "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 || !strings.Contains(string(out), "mamorictl") {
		t.Fatalf("man -l %s: %v\n%s", page, err, stderr.String())
	}
}
