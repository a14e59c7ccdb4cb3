package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// The console login and session tables are shared with PostgreSQL
// (server/store/internal/sharedsql/console.go); SearchDevices reads the
// devices table as this backend's other device queries do.

func (s *Store) SetOperatorLogin(ctx context.Context, l store.OperatorLogin) error {
	return s.sh().SetOperatorLogin(ctx, l)
}
func (s *Store) OperatorLogin(ctx context.Context, login string) (store.OperatorLogin, store.Operator, error) {
	return s.sh().OperatorLogin(ctx, login)
}
func (s *Store) GetOperator(ctx context.Context, id string) (store.Operator, error) {
	return s.sh().GetOperator(ctx, id)
}
func (s *Store) LoginFailed(ctx context.Context, operatorID string, at time.Time, maxFailures int, lockFor time.Duration) (store.OperatorLogin, error) {
	return s.sh().LoginFailed(ctx, operatorID, at, maxFailures, lockFor)
}
func (s *Store) LoginSucceeded(ctx context.Context, operatorID string, step int64, at time.Time) error {
	return s.sh().LoginSucceeded(ctx, operatorID, step, at)
}
func (s *Store) CreateSession(ctx context.Context, cs store.ConsoleSession) error {
	return s.sh().CreateSession(ctx, cs)
}
func (s *Store) Session(ctx context.Context, idHash []byte) (store.ConsoleSession, store.Operator, error) {
	return s.sh().Session(ctx, idHash)
}
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return s.sh().TouchSession(ctx, idHash, at)
}
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	return s.sh().DeleteSession(ctx, idHash)
}

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
