package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/servertest"
)

// copyDataDir copies a stopped server's whole data directory (database,
// CA, keys, the audit checkpoint file): a backup, or its restore over a
// directory emptied first.
func copyDataDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditWitnessRestoredDataDir: the real agent core keeps the signed
// audit checkpoint the real server hands out and sends it back in its
// full reports. The server is then restored from an older backup of its
// whole data directory — database and checkpoint file together, so the
// server itself cannot tell — and the terminal's copy says so: the audit
// log gets a witness-conflict record naming the terminal and the
// checkpoint, and the metric counts it. The reports are stored as usual.
func TestAuditWitnessRestoredDataDir(t *testing.T) {
	testenv.Short(t)
	data, backup, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	dir := enrolAgent(t, h, t.TempDir(), "pc-witness")
	id := deviceID(t, dir)
	a := startAgentWith(t, dir, h.Clock.Now, "pc-witness", func(c *daemon.Config, _ daemon.Spool) {
		c.FullReportEvery = 0 // full reports only: each carries the witness and gets the newest checkpoint
	})
	a.waitRound(t, "a report", func(r daemon.RoundResult) bool { return r.Err == nil })

	// Backup of the whole data directory, the server stopped (its close
	// signs a checkpoint).
	h.Stop()
	copyDataDir(t, data, backup)

	// Later: operator actions, a checkpoint (an export), and the terminal
	// takes it.
	h2 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	for range 3 {
		h2.Token(t, 1, time.Hour)
	}
	if _, err := h2.Admin(t, h2.AdminToken).ListAudit(ctx, &mamoriv1.ListAuditRequest{PageSize: 1000}); err != nil {
		t.Fatal(err)
	}
	head, err := h2.Srv.Store().AuditHead(ctx)
	if err != nil || head.Action != "audit.checkpoint" {
		t.Fatalf("head after the export: %+v %v", head, err)
	}
	var held *mamoriv1.AuditCheckpoint
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		held, _ = dir.LoadWitness()
		if held.GetSeq() == head.Seq-1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if held.GetSeq() != head.Seq-1 {
		t.Fatalf("the terminal holds checkpoint seq %d, want %d (the export's)", held.GetSeq(), head.Seq-1)
	}
	h2.Stop()

	// Restore the older backup over the data directory.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	copyDataDir(t, backup, data)
	h3 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	var conflict string
	deadline = time.Now().Add(20 * time.Second)
	for conflict == "" && time.Now().Before(deadline) {
		rs, err := h3.Srv.Store().ListAudit(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Action == admin.WitnessAction {
				conflict = r.Target + ": " + r.Detail
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(conflict, "device "+id+": rolled back: terminal "+id+" holds the server's signed checkpoint of seq ") {
		t.Fatalf("no witness conflict in the restored server's audit log: %q", conflict)
	}
	t.Logf("restored server's audit log: %s", conflict)
	// The terminal keeps its copy (the restored server's checkpoints are
	// older) and its reports are stored.
	r := a.waitRound(t, "a report to the restored server", func(r daemon.RoundResult) bool { return r.Err == nil })
	if now, _ := dir.LoadWitness(); now.GetSeq() != held.GetSeq() {
		t.Fatalf("the terminal's copy went from seq %d to %d", held.GetSeq(), now.GetSeq())
	}
	if got, err := h3.Srv.Store().GetDevice(ctx, id); err != nil || got.StateDigest != r.StateDigest {
		t.Fatalf("report not stored: %q vs %q (%v)", got.StateDigest, r.StateDigest, err)
	}
	var metrics strings.Builder
	h3.Srv.WriteMetrics(&metrics)
	if !strings.Contains(metrics.String(), "mamori_audit_witness_conflicts_total ") ||
		strings.Contains(metrics.String(), "mamori_audit_witness_conflicts_total 0\n") {
		t.Fatalf("metric:\n%s", metrics.String())
	}
}
