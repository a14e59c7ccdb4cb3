package ctl_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/ctl"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestAuditRewriteDetected (issue 14 item 8), on a real SQLite file and
// a real PostgreSQL: someone with write access to the database but not
// the server's key changes a record and recomputes the unkeyed chain
// after it, so the plain chain verifies again — and `mamorictl audit
// verify` still fails, on the signed checkpoint; the server refuses to
// sign the rewritten head.
func TestAuditRewriteDetected(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var o servertest.Options
			if backend == "postgres" {
				o.DB = pgtest.DSN(t)
			}
			h := servertest.Start(t, o)
			for range 4 {
				h.Token(t, 1, 0)
			}
			if code, out, errs := runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify"); code != ctl.ExitOK || !strings.Contains(out, "signed by the server's CA key through seq 5") {
				t.Fatalf("intact: exit %d\n%s%s", code, out, errs)
			}
			for range 3 {
				h.Token(t, 1, 0)
			}
			if code, out, _ := runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify"); code != ctl.ExitOK || !strings.Contains(out, "through seq 9 (2 checkpoints)") {
				t.Fatalf("intact after more records: exit %d\n%s", code, out)
			}

			// The rewrite, straight in the database: seq 3's detail, and
			// every hash from there recomputed as audit.Hash does.
			ctx := context.Background()
			rs, err := h.Srv.Store().ListAudit(ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var db *sql.DB
			q := "UPDATE audit SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?"
			if backend == "sqlite" {
				db, err = sql.Open("sqlite", filepath.Join(h.DataDir, "mamori.db")+"?_pragma=busy_timeout(10000)")
			} else {
				db, err = sql.Open("pgx", o.DB)
				q = "UPDATE audit SET detail = $1, prev_hash = $2, hash = $3 WHERE seq = $4"
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var prev []byte
			var plain audit.Verifier
			for i, r := range rs {
				if r.Seq == 3 {
					r.Detail = `uses=1 note="nothing to see"`
				}
				if r.Seq >= 3 {
					r.PrevHash = prev
					r.Hash = audit.Hash(prev, r)
					if _, err := db.Exec(q, r.Detail, r.PrevHash, r.Hash, r.Seq); err != nil {
						t.Fatal(err)
					}
				}
				prev = r.Hash
				rs[i] = r
				plain.Add(r)
			}
			if !plain.OK() {
				t.Fatalf("the recomputed unkeyed chain should verify: %s", plain.Problem())
			}
			// Also without a new record: the checkpoints already in the log
			// no longer hold.
			code, out, errs := runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify")
			if code != ctl.ExitError || !strings.Contains(out, "seq 6: signed checkpoint broken") || !strings.Contains(out, "seq 10: signed checkpoint broken") {
				t.Fatalf("rewritten and recomputed: exit %d\n%s%s", code, out, errs)
			}
			if strings.Contains(out, "content changed") || strings.Contains(out, "prev_hash") {
				t.Errorf("the unkeyed chain holds; only the checkpoints should fail:\n%s", out)
			}
			code, out, _ = runAgainst(t, h, h.AdminToken, "ja_JP.UTF-8", "audit", "verify")
			if code != ctl.ExitError || !strings.Contains(out, "署名付きチェックポイントが一致しません") {
				t.Fatalf("rewritten (ja): exit %d\n%s", code, out)
			}
			// A new record, then an export: the server will not sign the
			// rewritten head.
			h.Token(t, 1, 0)
			if code, out, errs := runAgainst(t, h, h.AdminToken, "en_US.UTF-8", "audit", "verify"); code == ctl.ExitOK {
				t.Fatalf("the server signed a rewritten head:\n%s%s", out, errs)
			}
			if head, err := h.Srv.Store().AuditHead(ctx); err != nil || audit.IsCheckpoint(head) {
				t.Errorf("a checkpoint was appended over the rewrite: %+v %v", head, err)
			}
		})
	}
}
