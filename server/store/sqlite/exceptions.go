package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// The exception and ledger tables are shared with PostgreSQL
// (server/store/internal/sharedsql/exceptions.go) but for ReplaceLedger,
// which loads the rows the way this backend loads many rows fastest.

// ReplaceLedger replaces the whole ledger in one transaction.
func (s *Store) ReplaceLedger(ctx context.Context, l store.LedgerImport) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM ledger"); err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		stmt, err := tx.PrepareContext(ctx, "INSERT INTO ledger (asset_id, hostname, serial, device_group, location, note) VALUES (?, ?, ?, ?, ?, ?)")
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		defer stmt.Close()
		for _, e := range l.Entries {
			_, err := stmt.ExecContext(ctx, e.AssetID, e.Hostname, e.Serial, e.Group, e.Location, e.Note)
			if isUnique(err) {
				return fmt.Errorf("replace ledger: asset %s twice: %w", e.AssetID, store.ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("replace ledger: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ledger_import (id, imported_by, imported_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET imported_by = excluded.imported_by, imported_at = excluded.imported_at`,
			l.ImportedBy, codec.Time(l.ImportedAt).UnixMicro())
		if err != nil {
			return fmt.Errorf("replace ledger: %w", err)
		}
		return nil
	})
}
