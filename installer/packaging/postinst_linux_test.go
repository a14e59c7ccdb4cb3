package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestPostinstServiceSemantics runs the real postinst against a fake
// systemctl, as on a live system (systemd "running": /run/systemd/system),
// inside a private mount namespace with tmpfs over /run, /etc/default and
// /var/lib so nothing on this machine is touched. The service is enabled
// on the first install only, and an upgrade never re-enables a service an
// administrator disabled (deb-systemd-helper / %systemd_post semantics);
// an upgrade only try-restarts.
func TestPostinstServiceSemantics(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare", "util-linux")
	dir := t.TempDir()
	script, err := filepath.Abs("linux/postinst.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	log := filepath.Join(dir, "calls")
	os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+log+"\n"), 0o755)
	run := func(args ...string) string {
		t.Helper()
		os.Remove(log)
		inner := `set -e
mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system
mount -t tmpfs tmpfs /etc/default
mount -t tmpfs tmpfs /var/lib
exec sh "$@"`
		cmd := exec.Command(unshare, append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", inner, "sh", script}, args...)...)
		cmd.Env = []string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "MAMORI_SERVER=s:1"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("postinst %v: %v\n%s", args, err, out)
		}
		b, _ := os.ReadFile(log)
		return strings.TrimSpace(string(b))
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"deb first install", []string{"configure"}, "daemon-reload\nenable mamori-agent.service\nenable mamori-isolation-boot.service\nstart mamori-agent.service"},
		{"deb upgrade", []string{"configure", "1.0.0"}, "daemon-reload\ntry-restart mamori-agent.service"},
		{"rpm install", []string{"1"}, "daemon-reload\nenable mamori-agent.service\nenable mamori-isolation-boot.service\nstart mamori-agent.service"},
		{"rpm upgrade", []string{"2"}, "daemon-reload\ntry-restart mamori-agent.service"},
		{"deb abort-upgrade", []string{"abort-upgrade", "1.0.0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args...); got != tc.want {
				t.Errorf("systemctl calls:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
