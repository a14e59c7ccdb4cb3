package sqlite

import (
	"context"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// The MFA tables (users, temporary codes, unlocks, generation) are shared
// with PostgreSQL: server/store/internal/sharedsql/mfa.go.

func (s *Store) PutMFAUser(ctx context.Context, u store.MFAUser, replace bool) (int64, error) {
	return s.sh().PutMFAUser(ctx, u, replace)
}
func (s *Store) ImportMFAUsers(ctx context.Context, us []store.MFAUser, replace bool) (int64, error) {
	return s.sh().ImportMFAUsers(ctx, us, replace)
}
func (s *Store) MFAUsers(ctx context.Context) ([]store.MFAUser, error) { return s.sh().MFAUsers(ctx) }
func (s *Store) MFAGeneration(ctx context.Context) (int64, error)      { return s.sh().MFAGeneration(ctx) }
func (s *Store) DeleteMFAUser(ctx context.Context, user string) (int64, error) {
	return s.sh().DeleteMFAUser(ctx, user)
}
func (s *Store) PutMFATempCode(ctx context.Context, c store.MFATempCode) (int64, error) {
	return s.sh().PutMFATempCode(ctx, c)
}
func (s *Store) MFATempCodes(ctx context.Context, now time.Time) ([]store.MFATempCode, error) {
	return s.sh().MFATempCodes(ctx, now)
}
func (s *Store) UnlockMFAUser(ctx context.Context, user, deviceID string) (gen, counter int64, err error) {
	return s.sh().UnlockMFAUser(ctx, user, deviceID)
}
func (s *Store) MFAUnlocks(ctx context.Context) ([]store.MFAUnlock, error) {
	return s.sh().MFAUnlocks(ctx)
}
func (s *Store) ConsumeMFACodes(ctx context.Context, user string, ids []string, at time.Time) (int, error) {
	return s.sh().ConsumeMFACodes(ctx, user, ids, at)
}
