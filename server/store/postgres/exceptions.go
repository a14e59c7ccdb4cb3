package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// The exception and ledger tables are shared with SQLite
// (server/store/internal/sharedsql/exceptions.go) but for ReplaceLedger,
// which loads the rows the way this backend loads many rows fastest.

// ReplaceLedger replaces the whole ledger in one transaction.
func (s *Store) ReplaceLedger(ctx context.Context, l store.LedgerImport) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM ledger"); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		rows := make([][]any, len(l.Entries))
		seen := make(map[string]bool, len(l.Entries))
		for i, e := range l.Entries {
			if seen[e.AssetID] {
				return fmt.Errorf("replace ledger: asset %s twice: %w", e.AssetID, store.ErrConflict)
			}
			seen[e.AssetID] = true
			rows[i] = []any{e.AssetID, e.Hostname, e.Serial, e.Group, e.Location, e.Note}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger"},
			[]string{"asset_id", "hostname", "serial", "device_group", "location", "note"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO ledger_import (id, imported_by, imported_at) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET imported_by = EXCLUDED.imported_by, imported_at = EXCLUDED.imported_at`,
			l.ImportedBy, codec.Time(l.ImportedAt))
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		return nil
	})
}
