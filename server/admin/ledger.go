package admin

import (
	"context"
	"fmt"

	"github.com/mamori-dev/mamori/server/ledger"
	"github.com/mamori-dev/mamori/server/store"
)

// LedgerStore is what importing the asset ledger needs.
type LedgerStore interface {
	ReplaceLedger(ctx context.Context, l store.LedgerImport) error
}

// ImportLedger replaces the asset ledger (端末台帳) with the CSV file;
// audited ledger.import with the row count and the reason. An invalid row
// refuses the whole file: ErrInvalid with the rows in a *ledger.Errors
// (errors.As). Returns how many rows were imported.
func (s *Service) ImportLedger(ctx context.Context, op Operator, csv []byte, reason string) (int, error) {
	const action = "ledger.import"
	if len(csv) > ledger.MaxBytes {
		msg := fmt.Sprintf("the file is %d bytes; at most %d", len(csv), ledger.MaxBytes)
		return 0, &Error{Action: action, Kind: ErrInvalid, Field: "file", Msg: msg,
			Cause: &ledger.Errors{List: []ledger.RowError{{Msg: msg}}}}
	}
	if err := checkReason(action, reason); err != nil {
		return 0, err
	}
	es, err := ledger.Parse(csv)
	if err != nil {
		return 0, &Error{Action: action, Kind: ErrInvalid, Field: "file",
			Msg: fmt.Sprintf("ledger refused, nothing imported: %v", err), Cause: err}
	}
	if err := s.audited(ctx, op, action, "ledger", fmt.Sprintf("rows=%d reason=%q", len(es), reason), func(ctx context.Context) error {
		return s.st.ReplaceLedger(ctx, store.LedgerImport{Entries: es, ImportedBy: op.ID, ImportedAt: s.now()})
	}); err != nil {
		return 0, err
	}
	return len(es), nil
}
