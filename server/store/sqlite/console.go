package sqlite

import (
	"context"
	"fmt"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// The console login and session tables are shared with PostgreSQL
// (server/store/internal/sharedsql/console.go); SearchDevices reads the
// devices table as this backend's other device queries do.

// SearchDevices finds devices by hostname prefix on the hostname index.
func (s *Store) SearchDevices(ctx context.Context, prefix string, limit int) ([]store.Device, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+deviceCols+` FROM devices
		WHERE hostname >= ? AND hostname < ? AND hostname <> '' ORDER BY hostname, id LIMIT ?`,
		prefix, store.HostnameUpper(prefix), codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	ds, err := scanDevices(rows)
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	return ds, nil
}
