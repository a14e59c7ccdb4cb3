package postgres

import (
	"context"
	"fmt"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// The console login and session tables are shared with SQLite
// (server/store/internal/sharedsql/console.go); SearchDevices reads the
// devices table as this backend's other device queries do.

// SearchDevices finds devices by hostname prefix on the hostname index
// (collation "C", so the range is byte-wise as in SQLite).
func (s *Store) SearchDevices(ctx context.Context, prefix string, limit int) ([]store.Device, error) {
	ds, err := queryDevices(ctx, s.pool, "SELECT "+deviceCols+` FROM devices
		WHERE hostname >= $1 AND hostname < $2 AND hostname <> '' ORDER BY hostname, id LIMIT $3`,
		prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	return ds, nil
}
