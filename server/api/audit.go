package api

import (
	"context"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// ListAudit returns the audit log as stored, oldest first, hashes
// included: the caller recomputes the chain itself (mamorictl audit
// verify), so a server that was tampered with cannot vouch for itself.
func (s *AdminService) ListAudit(ctx context.Context, req *mamoriv1.ListAuditRequest) (*mamoriv1.ListAuditResponse, error) {
	if req.AfterSeq < 0 {
		return nil, invalidArg("after_seq %d: must not be negative", req.AfterSeq)
	}
	if req.AfterSeq == 0 {
		// An export or a verification starts: the head is signed first,
		// so what it reads is covered by a checkpoint.
		if err := s.actions.Checkpoint(ctx); err != nil {
			return nil, err
		}
	}
	limit := pageSize(req.PageSize)
	rs, err := s.store.ListAudit(ctx, req.AfterSeq, limit+1)
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.ListAuditResponse{}
	if len(rs) > limit {
		rs = rs[:limit]
		resp.NextAfterSeq = rs[limit-1].Seq
	}
	for _, r := range rs {
		resp.Records = append(resp.Records, &mamoriv1.AuditRecord{
			Seq: r.Seq, At: ts(r.At), Actor: r.Actor, Action: r.Action, Target: r.Target,
			Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash,
		})
	}
	return resp, nil
}
