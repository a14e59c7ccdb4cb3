package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// TestAgentUnderUnitCapabilities runs the real binary with what
// mamori-agent.service grants, read from the unit itself: no_new_privs and
// exactly its CapabilityBoundingSet (setpriv), in a private mount namespace
// with its own /run. The agent must start, serve the login socket and keep
// running; `media list` (sysfs, block devices) must work. PID 1 here is not
// systemd, so the rest of the sandbox (ProtectSystem, SystemCallFilter…) is
// checked offline by installer/packaging TestAgentUnitSandbox only.
func TestAgentUnderUnitCapabilities(t *testing.T) {
	testenv.Short(t)
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare", "util-linux")
	setpriv := testenv.LookPath(t, "setpriv", "util-linux")
	unit, err := os.ReadFile("../../../installer/packaging/linux/mamori-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	nnp := false
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch k {
		case "CapabilityBoundingSet":
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		case "NoNewPrivileges":
			nnp = v == "yes"
		}
	}
	if len(caps) == 0 || !nnp {
		t.Fatalf("unit: bounding set %v, NoNewPrivileges %v", caps, nnp)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mamori-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	priv := []string{setpriv, "--no-new-privs", "--bounding-set", "-all," + strings.Join(caps, ","), "--inh-caps", "-all", "--"}
	script := `set -e
mount -t tmpfs tmpfs /run
"$@" run --config /dev/null --state-dir ` + filepath.Join(dir, "state") + ` &
agent=$!
for i in $(seq 1 100); do [ -S /run/mamori/agent.sock ] && break; sleep 0.1; done
sleep 2
kill -0 $agent
grep CapBnd /proc/$agent/status
grep NoNewPrivs /proc/$agent/status
"$@" media list > /dev/null
echo media-list-ok
test -S /run/mamori/agent.sock && echo socket-ok
kill $agent; wait $agent || true`
	cmd := exec.Command(unshare, append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}, append(priv, bin)...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	t.Logf("agent with the unit's capabilities:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("socket-ok")) || !bytes.Contains(out, []byte("media-list-ok")) || !bytes.Contains(out, []byte("NoNewPrivs:\t1")) {
		t.Fatalf("the agent did not run under the unit's capabilities: %v", err)
	}
	if bytes.Contains(out, []byte("CapBnd:\t000001ffffffffff")) {
		t.Fatal("the bounding set was not applied")
	}
}
