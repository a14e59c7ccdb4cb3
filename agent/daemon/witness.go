package daemon

import (
	"context"

	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/auditsig"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Witnesses (issue #14; server/admin/witness.go, docs/security.md
// "Witnesses"): the terminal keeps the newest signed audit checkpoint the
// server gave it and sends it back in its full reports, so a server whose
// audit log was rolled back or replaced (data directory and all) is found
// out by the terminals' copies. A checkpoint is kept only when its
// signature is by the CA this terminal pins and its seq is newer than the
// one held: a server cannot make a terminal forget what it witnessed by
// handing out an older one.

// witnessed returns the checkpoint to send with a full report (nil: none
// held), reading the state directory once.
func (d *Daemon) witnessed(ctx context.Context, id *state.Identity) *mamoriv1.AuditCheckpoint {
	if !d.witnessLoaded {
		d.witnessLoaded = true
		cp, err := d.cfg.State.LoadWitness()
		switch {
		case err != nil:
			d.log.WarnContext(ctx, "witnessed audit checkpoint unreadable; starting without one", "error", err)
		case cp != nil:
			if err := auditsig.Verify(id.CA, cp.Seq, cp.Head, cp.Signature); err != nil {
				d.log.WarnContext(ctx, "witnessed audit checkpoint does not verify with the pinned CA; starting without one", "error", err)
			} else {
				d.witness = cp
			}
		}
	}
	return d.witness
}

// takeCheckpoint keeps cp when it is signed by the pinned CA and newer
// than the one held.
func (d *Daemon) takeCheckpoint(ctx context.Context, id *state.Identity, cp *mamoriv1.AuditCheckpoint) {
	held := d.witnessed(ctx, id)
	if cp.GetSeq() <= held.GetSeq() {
		return
	}
	if err := auditsig.Verify(id.CA, cp.Seq, cp.Head, cp.Signature); err != nil {
		d.log.WarnContext(ctx, "the server's audit checkpoint does not verify with the pinned CA; not kept", "seq", cp.GetSeq(), "error", err)
		return
	}
	if err := d.cfg.State.SaveWitness(cp); err != nil {
		// Kept in memory all the same: sent with the next full report.
		d.log.WarnContext(ctx, "audit checkpoint not saved", "seq", cp.Seq, "error", err)
	}
	d.witness = cp
}
