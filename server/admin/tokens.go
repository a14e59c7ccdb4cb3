package admin

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// TokenStore is what creating an enrolment token needs.
type TokenStore interface {
	CreateToken(ctx context.Context, t store.Token) error
}

// Enrolment token limits.
const (
	DefaultTokenTTL = 24 * time.Hour
	MaxTokenTTL     = 90 * 24 * time.Hour
	MaxTokenUses    = 100000
)

// TokenRequest is an enrolment token to create. Zero TTL and Uses mean
// DefaultTokenTTL and one use.
type TokenRequest struct {
	TTL   time.Duration
	Uses  int
	Note  string
	Group string
}

// CreateToken makes a token that enrols up to Uses devices until it
// expires; audited token.create. The secret is returned here only: the
// store keeps its hash. Refusals: ErrInvalid.
func (s *Service) CreateToken(ctx context.Context, op Operator, r TokenRequest) (auth.Secret, store.Token, error) {
	const action = "token.create"
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return "", store.Token{}, invalid(action, "ttl", "ttl %v: must be between 1m and %v", ttl, MaxTokenTTL)
	}
	uses := r.Uses
	if uses == 0 {
		uses = 1
	}
	if uses < 1 || uses > MaxTokenUses {
		return "", store.Token{}, invalid(action, "uses", "uses %d: must be between 1 and %d", r.Uses, MaxTokenUses)
	}
	if err := CheckString(action, "note", r.Note, MaxReasonLength); err != nil {
		return "", store.Token{}, err
	}
	if err := CheckGroup(action, r.Group); err != nil {
		return "", store.Token{}, err
	}
	now := s.now()
	secret := auth.NewToken(auth.EnrollmentTokenPrefix)
	t := store.Token{
		ID:        uuid.NewString(),
		Hash:      auth.HashToken(secret.Reveal()),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
		Uses:      uses,
		Note:      r.Note,
		CreatedBy: op.ID,
		Group:     r.Group,
	}
	if err := s.audited(ctx, op, action, t.ID,
		fmt.Sprintf("uses=%d expires=%s note=%q group=%q", uses, t.ExpiresAt.UTC().Format(time.RFC3339), r.Note, r.Group),
		func(ctx context.Context) error {
			if err := s.st.CreateToken(ctx, t); err != nil {
				return fmt.Errorf("store token: %w", err)
			}
			return nil
		}); err != nil {
		return "", store.Token{}, err
	}
	return secret, t, nil
}
