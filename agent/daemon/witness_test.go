package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/auditsig"
	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestWitnessKeepsOnlyNewerSigned: the terminal keeps a checkpoint only
// when the CA it pins signed it and it is newer than the one held; what
// it keeps survives a restart; a damaged or foreign file is not sent.
func TestWitnessKeepsOnlyNewerSigned(t *testing.T) {
	ctx := context.Background()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(ca *pki.CA, seq int64, fill byte) *mamoriv1.AuditCheckpoint {
		head := bytes.Repeat([]byte{fill}, 32)
		sig, err := ca.SignMessage(auditsig.Message(seq, head))
		if err != nil {
			t.Fatal(err)
		}
		return &mamoriv1.AuditCheckpoint{Seq: seq, Head: head, Signature: sig}
	}
	dirPath := t.TempDir()
	st, err := state.Open(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	id := &state.Identity{CA: ca.Cert}
	newDaemon := func() *Daemon { return &Daemon{cfg: Config{State: st}, log: slog.New(slog.DiscardHandler)} }

	d := newDaemon()
	if cp := d.witnessed(ctx, id); cp != nil {
		t.Fatalf("a witness before any: %v", cp)
	}
	d.takeCheckpoint(ctx, id, sign(ca, 10, 1))
	d.takeCheckpoint(ctx, id, sign(other, 20, 2)) // another CA: not kept
	d.takeCheckpoint(ctx, id, sign(ca, 5, 3))     // older: not kept
	forged := sign(ca, 30, 4)
	forged.Head[0] ^= 1 // the signature no longer covers it
	d.takeCheckpoint(ctx, id, forged)
	if cp := d.witnessed(ctx, id); cp.GetSeq() != 10 || cp.Head[0] != 1 {
		t.Fatalf("held %v, want seq 10", cp)
	}
	// A restart reads it back.
	if cp := newDaemon().witnessed(ctx, id); cp.GetSeq() != 10 {
		t.Fatalf("after a restart: %v", cp)
	}
	// Newer and signed: kept.
	d.takeCheckpoint(ctx, id, sign(ca, 11, 5))
	if cp := newDaemon().witnessed(ctx, id); cp.GetSeq() != 11 {
		t.Fatalf("after a newer one: %v", cp)
	}
	// Re-enrolled to another server (another CA): the old copy is not sent.
	if cp := newDaemon().witnessed(ctx, &state.Identity{CA: other.Cert}); cp != nil {
		t.Fatalf("a copy of another CA's checkpoint sent: %v", cp)
	}
	// A damaged file: not sent, and a new checkpoint replaces it.
	if err := os.WriteFile(filepath.Join(dirPath, state.WitnessFile), []byte("\xff\xff garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = newDaemon()
	if cp := d.witnessed(ctx, id); cp != nil {
		t.Fatalf("a damaged file sent: %v", cp)
	}
	d.takeCheckpoint(ctx, id, sign(ca, 12, 6))
	if cp := newDaemon().witnessed(ctx, id); cp.GetSeq() != 12 {
		t.Fatalf("after a damaged file: %v", cp)
	}
}
