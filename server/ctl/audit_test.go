package ctl_test

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/ctl"
	"github.com/mamori-dev/mamori/server/servertest"
)

// runAgainst runs mamorictl in-process against a real server.
func runAgainst(t *testing.T, h *servertest.Harness, token, lang string, args ...string) (int, string, string) {
	t.Helper()
	env := map[string]string{
		"MAMORI_SERVER": h.AdminAddr, "MAMORI_CA_FILE": filepath.Join(h.DataDir, "ca.pem"),
		"MAMORI_TOKEN": token, "LANG": lang,
	}
	var out, errb bytes.Buffer
	code := ctl.RunOptions(context.Background(), args, ctl.Options{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }, Now: h.Clock.Now,
	})
	return code, out.String(), errb.String()
}

// TestAuditVerify runs `mamorictl audit verify` against a real server with
// a real SQLite file: intact, then with one row's content changed directly
// in the database, then with a row deleted, in both languages.
func TestAuditVerify(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	for range 4 {
		h.Token(t, 1, 0) // each is an audit record: token.create
	}
	helpdesk := h.Operator(t, "ヘルプ", auth.RoleHelpdesk)

	// 5 records and the signed checkpoint the server appends before the
	// export starts (issue 14 item 8).
	code, out, errs := runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify")
	if code != ctl.ExitOK || !strings.Contains(out, "audit chain intact: 6 records") || !strings.Contains(out, "through seq 5") {
		t.Fatalf("intact chain: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runAgainst(t, h, h.AdminToken, "ja_JP.UTF-8", "audit", "verify")
	if code != ctl.ExitOK || !strings.Contains(out, "監査チェーンは正常です: 6 件") {
		t.Fatalf("intact chain (ja): exit %d, stdout %q", code, out)
	}
	if code, _, errs := runAgainst(t, h, helpdesk, "en_US.UTF-8", "audit", "verify"); code != ctl.ExitError || !strings.Contains(errs, "role") {
		t.Fatalf("helpdesk may not read the audit log: exit %d, stderr %q", code, errs)
	}

	db, err := sql.Open("sqlite", filepath.Join(h.DataDir, "mamori.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit SET detail = 'uses=100 note="nothing to see"' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify")
	if code != ctl.ExitError || !strings.Contains(out, "seq 3: content changed") || !strings.Contains(errs, "first at seq 3") {
		t.Fatalf("tampered row 3: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if strings.Contains(out, "seq 2:") || strings.Contains(out, "seq 4:") {
		t.Errorf("only seq 3 was changed, but verify blames others:\n%s", out)
	}
	code, out, errs = runAgainst(t, h, h.AdminToken, "ja_JP.UTF-8", "audit", "verify")
	if code != ctl.ExitError || !strings.Contains(out, "連番 3: 内容が変更されています") || !strings.Contains(errs, "最初は連番 3") {
		t.Fatalf("tampered row 3 (ja): exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A forger who also rewrites the row's hash breaks the next link.
	if _, err := db.Exec(`UPDATE audit SET detail = 'x', hash = zeroblob(32) WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify")
	if !strings.Contains(out, "seq 4: its prev_hash does not match the hash of seq 3") {
		t.Errorf("rewritten hash of seq 3: want the link of seq 4 named, got\n%s", out)
	}

	// Deleting a row leaves a gap.
	if _, err := db.Exec(`DELETE FROM audit WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify")
	if !strings.Contains(out, "seq 3: records after seq 1 are missing") {
		t.Errorf("deleted seq 2: want the gap named, got\n%s", out)
	}
}
