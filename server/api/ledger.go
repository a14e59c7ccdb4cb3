package api

import (
	"context"
	"fmt"
	"strings"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/ledger"
	"github.com/mamori-dev/mamori/server/store"
)

// ImportLedger replaces the asset ledger (端末台帳). Officer, audited.
// An invalid row refuses the whole file; the answer lists the rows.
func (s *Server) ImportLedger(ctx context.Context, req *mamoriv1.ImportLedgerRequest) (*mamoriv1.ImportLedgerResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.Csv) > ledger.MaxBytes {
		return nil, invalidArg("the file is %d bytes; at most %d", len(req.Csv), ledger.MaxBytes)
	}
	if strings.TrimSpace(req.Reason) == "" {
		return nil, invalidArg("a reason is required: it goes into the audit log")
	}
	if err := checkString("reason", req.Reason, maxNoteLength); err != nil {
		return nil, err
	}
	es, err := ledger.Parse(req.Csv)
	if err != nil {
		return nil, invalidArg("ledger refused, nothing imported: %v", err)
	}
	if err := s.audited(ctx, op.ID, "ledger.import", "ledger", fmt.Sprintf("rows=%d reason=%q", len(es), req.Reason), func(ctx context.Context) error {
		return s.store.ReplaceLedger(ctx, store.LedgerImport{Entries: es, ImportedBy: op.ID, ImportedAt: s.now()})
	}); err != nil {
		return nil, err
	}
	return &mamoriv1.ImportLedgerResponse{Rows: int32(len(es))}, nil
}

// ListLedger returns the ledger matched to the enrolled devices. Helpdesk.
func (s *Server) ListLedger(ctx context.Context, _ *mamoriv1.ListLedgerRequest) (*mamoriv1.ListLedgerResponse, error) {
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
