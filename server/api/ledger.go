package api

import (
	"context"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/ledger"
)

// ImportLedger replaces the asset ledger (端末台帳). Officer, audited
// (admin.Service.ImportLedger). An invalid row refuses the whole file; the
// answer lists the rows.
func (s *AdminService) ImportLedger(ctx context.Context, req *mamoriv1.ImportLedgerRequest) (*mamoriv1.ImportLedgerResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	n, err := s.actions.ImportLedger(ctx, op, req.Csv, req.Reason)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.ImportLedgerResponse{Rows: int32(n)}, nil
}

// ListLedger returns the ledger matched to the enrolled devices. Helpdesk.
func (s *AdminService) ListLedger(ctx context.Context, _ *mamoriv1.ListLedgerRequest) (*mamoriv1.ListLedgerResponse, error) {
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	rows, l, err := ledger.Rows(ctx, s.store, p, s.now(), maxPageSize)
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.ListLedgerResponse{ImportedAt: ts(l.ImportedAt), ImportedBy: l.ImportedBy}
	for _, r := range rows {
		resp.Rows = append(resp.Rows, &mamoriv1.LedgerRow{
			AssetId: r.Entry.AssetID, Hostname: r.Entry.Hostname, Serial: r.Entry.Serial, Group: r.Entry.Group,
			Location: r.Entry.Location, Note: r.Entry.Note, State: r.State, DeviceId: r.DeviceID, Compliance: r.Compliance,
		})
	}
	return resp, nil
}
