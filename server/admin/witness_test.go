package admin_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/audit"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/sqlite"
)

// witnessServer is a real SQLite store with an admin service that signs
// checkpoints with ca, remembering them in ckFile.
func witnessServer(t *testing.T, ca *pki.CA, dir string) (*admin.Service, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "mamori.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := admin.New(admin.Deps{Store: st, SignAudit: ca.SignMessage, CheckpointFile: filepath.Join(dir, "audit-checkpoint")})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// appendRecords appends n operator records through the store.
func appendRecords(t *testing.T, st store.Store, n int, what string) {
	t.Helper()
	for i := range n {
		if _, err := st.AppendAudit(context.Background(), audit.Record{At: time.Now(), Actor: "admin", Action: "policy.set",
			Target: "policy", Detail: what + " " + string(rune('a'+i%26))}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWitness: a checkpoint the log holds is held; one past the log's head
// (the log restored from an older backup, checkpoint file and all) is a
// roll-back; one whose record has another hash (another history written
// over the same seqs) is a fork; a copy not signed by this CA proves
// nothing. A conflict is written to the audit log once per checkpoint and
// kind, and counted every time.
func TestWitness(t *testing.T) {
	ctx := context.Background()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	check := audit.CheckCA(ca.Cert)

	// The server's history: 5 records, a checkpoint (the terminal gets it).
	s, st := witnessServer(t, ca, t.TempDir())
	if _, ok := s.LatestCheckpoint(); ok {
		t.Fatal("a checkpoint before any was signed")
	}
	appendRecords(t, st, 5, "first")
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cp, ok := s.LatestCheckpoint()
	if !ok || cp.Seq != 5 || len(cp.Head) != 32 {
		t.Fatalf("latest checkpoint %+v %v", cp, ok)
	}
	if res, err := s.Witness(ctx, "dev-1", cp, check); err != nil || res != admin.WitnessHeld {
		t.Fatalf("held checkpoint: %v %v", res, err)
	}
	// A copy signed by another CA, or damaged, proves nothing.
	forged := cp
	forged.Head = bytes.Repeat([]byte{7}, 32)
	forged.Sig, _ = other.SignMessage(audit.CheckpointMessage(forged.Seq, forged.Head))
	if _, err := s.Witness(ctx, "dev-1", forged, check); err != admin.ErrWitnessUnsigned {
		t.Fatalf("forged: %v", err)
	}
	bad := cp
	bad.Head = bytes.Repeat([]byte{1}, 31)
	if _, err := s.Witness(ctx, "dev-1", bad, check); err == nil {
		t.Fatal("a 31-byte head accepted")
	}

	// Another server over an older copy of the log (the same CA: a backup
	// restored with its data directory) has only 2 records and its
	// checkpoint.
	s2, st2 := witnessServer(t, ca, t.TempDir())
	appendRecords(t, st2, 2, "first")
	if err := s2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := s2.Witness(ctx, "dev-1", cp, check)
	if err != nil || res != admin.WitnessRolledBack {
		t.Fatalf("rolled back: %v %v", res, err)
	}
	// Again (another terminal, the same checkpoint): counted, not written twice.
	if res, err := s2.Witness(ctx, "dev-2", cp, check); err != nil || res != admin.WitnessRolledBack {
		t.Fatalf("rolled back again: %v %v", res, err)
	}
	if n := s2.WitnessConflicts(); n != 2 {
		t.Fatalf("conflicts counted %d, want 2", n)
	}
	conflicts := func(st store.Store) []store.AuditRecord {
		rs, err := st.ListAudit(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []store.AuditRecord
		for _, r := range rs {
			if r.Action == admin.WitnessAction {
				out = append(out, r)
			}
		}
		return out
	}
	got := conflicts(st2)
	if len(got) != 1 || !strings.HasPrefix(got[0].Detail, "rolled back: terminal dev-1 holds the server's signed checkpoint of seq 5") ||
		!strings.Contains(got[0].Detail, "this log ends at seq") {
		t.Fatalf("conflict records %+v", got)
	}
	// The restored server goes on; its record 5 is another history.
	appendRecords(t, st2, 3, "second")
	res, err = s2.Witness(ctx, "dev-1", cp, check)
	if err != nil || res != admin.WitnessForked {
		t.Fatalf("forked: %v %v", res, err)
	}
	got = conflicts(st2)
	if len(got) != 2 || !strings.HasPrefix(got[1].Detail, "forked: terminal dev-1") {
		t.Fatalf("conflict records %+v", got)
	}
	// The conflict records are part of the chain like any other.
	rs, _ := st2.ListAudit(ctx, 0, 1000)
	var v audit.Verifier
	v.Signed(check)
	for _, r := range rs {
		v.Add(r)
	}
	if b := v.Breaks(); len(b) != 0 {
		t.Fatalf("chain breaks: %v", b)
	}
	// The original server still holds its checkpoint.
	if res, err := s.Witness(ctx, "dev-1", cp, check); err != nil || res != admin.WitnessHeld {
		t.Fatalf("held again: %v %v", res, err)
	}
}

// TestLatestCheckpointAfterRestart: the checkpoint file remembers the
// signature, so a restarted server hands out its last checkpoint before
// it signs a new one; a file an older server wrote (seq and head only)
// still reads.
func TestLatestCheckpointAfterRestart(t *testing.T) {
	ctx := context.Background()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, st := witnessServer(t, ca, dir)
	appendRecords(t, st, 4, "x")
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := s.LatestCheckpoint()
	appendRecords(t, st, 2, "y") // the head is not a checkpoint now
	s2, err := admin.New(admin.Deps{Store: st, SignAudit: ca.SignMessage, CheckpointFile: filepath.Join(dir, "audit-checkpoint")})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.LatestCheckpoint()
	if !ok || got.Seq != want.Seq || !bytes.Equal(got.Head, want.Head) || !bytes.Equal(got.Sig, want.Sig) {
		t.Fatalf("after restart %+v %v, want %+v", got, ok, want)
	}
	if err := audit.CheckCA(ca.Cert)(audit.CheckpointMessage(got.Seq, got.Head), got.Sig); err != nil {
		t.Fatal(err)
	}
	// Its first due check signs the head; that one is handed out next.
	if err := s2.CheckpointIfDue(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.LatestCheckpoint(); got.Seq != 7 {
		t.Fatalf("after a new checkpoint: seq %d, want 7 (the head)", got.Seq)
	}
}
