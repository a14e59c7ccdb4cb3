package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
)

// buildCtl builds the real mamorictl binary once per test run.
func buildCtl(t *testing.T) string {
	return buildOnce(t, "../../server/cmd/mamorictl", "mamorictl")
}

// ctlBinary runs the real mamorictl against server with token; it returns
// the exit code, stdout and stderr.
func ctlBinary(t *testing.T, h *servertest.Harness, server, token string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildCtl(t), args...)
	cmd.Env = append(os.Environ(), "LANG=C", "MAMORI_SERVER="+server, "MAMORI_CA_FILE="+filepath.Join(h.DataDir, "ca.pem"), "MAMORI_TOKEN="+token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestOperatorTokensMamorictlBinary (issue 14 item 7) with the real
// mamorictl binary and the real server: the first admin exchanges the
// bootstrap token for a named one (the bootstrap token is refused
// afterwards), makes a token for a helpdesk operator, lists and revokes
// it (refused from then on); no token is accepted on the agents' port.
func TestOperatorTokensMamorictlBinary(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	boot := h.Srv.Boot.AdminToken.Reveal()
	code, out, errOut := ctlBinary(t, h, h.AdminAddr, boot, "fleet")
	if code == 0 || !strings.Contains(errOut, "bootstrap") {
		t.Fatalf("bootstrap token on fleet: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctlBinary(t, h, h.AdminAddr, boot, "api-token", "create", "--name", "laptop", "-o", "json")
	if code != 0 {
		t.Fatalf("exchange: exit %d\n%s%s", code, out, errOut)
	}
	var created struct {
		Token string `json:"token"`
		Info  struct {
			Name string `json:"name"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || !strings.HasPrefix(created.Token, "mmo_") || created.Info.Name != "laptop" {
		t.Fatalf("api-token create -o json: %v\n%s", err, out)
	}
	mine := created.Token
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, boot, "api-token", "create", "--name", "again"); code == 0 || !strings.Contains(errOut, "used already") {
		t.Fatalf("bootstrap token twice: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, mine, "fleet"); code != 0 {
		t.Fatalf("own token: exit %d\n%s%s", code, out, errOut)
	}

	// An admin makes, lists and revokes a helpdesk operator's token.
	h.Operator(t, "yamada", auth.RoleHelpdesk)
	code, out, errOut = ctlBinary(t, h, h.AdminAddr, mine, "api-token", "create", "--name", "ci", "--operator", "yamada", "--expires", "7d")
	if code != 0 || !strings.Contains(out, "mmo_") {
		t.Fatalf("create for yamada: exit %d\n%s%s", code, out, errOut)
	}
	var ci string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "mmo_") {
			ci = f
		}
	}
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, ci, "devices"); code != 0 {
		t.Fatalf("yamada's ci token: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctlBinary(t, h, h.AdminAddr, mine, "api-token", "list", "--all")
	if code != 0 || !strings.Contains(out, "yamada  ci  expires") || !strings.Contains(out, "admin  bootstrap  revoked") || strings.Contains(out, "mmo_") {
		t.Fatalf("api-token list --all: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, ci, "api-token", "list", "--all"); code == 0 || !strings.Contains(errOut, "admin") {
		t.Fatalf("helpdesk lists all: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, mine, "api-token", "revoke", "ci", "--operator", "yamada"); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = ctlBinary(t, h, h.AdminAddr, ci, "devices"); code == 0 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("revoked token: exit %d\n%s%s", code, out, errOut)
	}

	// The agents' port: refused, whatever the token.
	if code, out, errOut = ctlBinary(t, h, h.Addr, mine, "fleet"); code == 0 || !strings.Contains(errOut, "agents' port") {
		t.Fatalf("admin token on the agents' port: exit %d\n%s%s", code, out, errOut)
	}
	// Every change audited.
	rs, err := h.Srv.Store().ListAudit(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range rs {
		n[r.Action]++
	}
	if n["operator.token-create"] != 2 || n["operator.token-revoke"] != 2 {
		t.Errorf("audited: %v", n)
	}
}

// TestOperatorTokensServerCommand: the real mamori-server binary's
// operator commands. Tokens are opt-in: an operator with neither a
// console password nor --api-token is refused; --api-token NAME makes a
// named token; `operator token` gives an existing operator another.
func TestOperatorTokensServerCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "mamori-server")
	if out, err := exec.Command("go", "build", "-o", bin, "../../server/cmd/mamori-server").CombinedOutput(); err != nil {
		t.Fatalf("build mamori-server: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil { // as a server's first start leaves it
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "LANG=C")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := run("operator", "create", "--data", data, "--name", "佐藤", "--role", "officer"); code != 2 || !strings.Contains(out, "--api-token") {
		t.Fatalf("operator without password or token: exit %d\n%s", code, out)
	}
	code, out := run("operator", "create", "--data", data, "--name", "佐藤", "--role", "officer", "--api-token", "cli")
	if code != 0 || !strings.Contains(out, "mmo_") {
		t.Fatalf("operator create --api-token: exit %d\n%s", code, out)
	}
	code, out = run("operator", "token", "--data", data, "--operator", "佐藤", "--name", "laptop", "--expires", "720h")
	if code != 0 || !strings.Contains(out, "API token laptop") || !strings.Contains(out, "mmo_") {
		t.Fatalf("operator token: exit %d\n%s", code, out)
	}
	if code, out = run("operator", "token", "--data", data, "--operator", "佐藤", "--name", "laptop"); code == 0 || !strings.Contains(out, "revoke it first") {
		t.Fatalf("the same live name twice: exit %d\n%s", code, out)
	}
	if code, out = run("operator", "token", "--data", data, "--operator", "佐藤", "--name", "long", "--expires", "2200h"); code == 0 || !strings.Contains(out, "90 days") {
		t.Fatalf("over 90 days: exit %d\n%s", code, out)
	}
}
