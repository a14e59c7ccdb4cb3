package api

import (
	"context"
	"errors"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/audit"
)

// witness runs after a full report is stored: the checkpoint the terminal
// kept is checked against the audit log (server/admin: Witness), and the
// answer carries this server's newest checkpoint when it is newer. What
// the check finds never fails the report: a conflict is the log's
// problem, recorded and counted there; a copy not signed by this CA is
// logged and ignored.
func (s *AgentService) witness(ctx context.Context, dev deviceIdentity, req *mamoriv1.ReportRequest, resp *mamoriv1.ReportResponse) {
	if s.actions == nil {
		return
	}
	held := req.GetWitnessedCheckpoint()
	if held != nil {
		res, err := s.actions.Witness(ctx, dev.ID, admin.Checkpoint{Seq: held.Seq, Head: held.Head, Sig: held.Signature}, audit.CheckCA(s.ca.Cert))
		switch {
		case errors.Is(err, admin.ErrWitnessUnsigned):
			s.metrics.witnessUnsigned.Add(1)
			s.log.WarnContext(ctx, "a terminal's audit checkpoint is not signed by this server's CA; ignored", "device", dev.ID, "seq", held.Seq)
		case err != nil:
			s.log.ErrorContext(ctx, "audit witness not checked", "device", dev.ID, "seq", held.Seq, "error", err)
		case res != admin.WitnessHeld:
			s.metrics.witnessConflicts.Add(1)
		}
	}
	if cp, ok := s.actions.LatestCheckpoint(); ok && cp.Seq > held.GetSeq() {
		resp.AuditCheckpoint = &mamoriv1.AuditCheckpoint{Seq: cp.Seq, Head: cp.Head, Signature: cp.Sig}
	}
}
