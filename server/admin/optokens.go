package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// OperatorTokenStore is what operator API tokens need.
type OperatorTokenStore interface {
	CreateOperatorToken(ctx context.Context, t store.OperatorToken) error
	ListOperatorTokens(ctx context.Context, operatorID string) ([]store.OperatorTokenInfo, error)
	RevokeOperatorToken(ctx context.Context, operatorID, name, by string, at time.Time) (store.OperatorToken, error)
	UseOperatorToken(ctx context.Context, id string, at time.Time) error
	ListOperators(ctx context.Context) ([]store.OperatorAccount, error)
}

// MaxTokenName bounds an operator token's name.
const MaxTokenName = 64

// Operator API tokens (issue 14 item 7, docs/security.md). A token is
// opt-in: an operator makes one for themselves (with a token they hold),
// or an admin for an operator; console-only operators have none. Each is
// named, expires (DefaultOperatorTokenTTL unless asked for less, never
// more than MaxOperatorTokenTTL), is listed and revoked by name, and every
// change is audited. A token an operator makes for themselves with a
// token ends no later than the token it was made with: a leaked token
// cannot be stretched past its own end by minting others (an admin, or
// `mamori-server operator token` on the server, makes a longer one). The
// first admin's bootstrap token is single-use: it can only make that
// admin's first named token, and ends doing so.

// validTokenName accepts a short, printable, one-line name.
func validTokenName(name string) bool {
	if name == "" || len(name) > MaxTokenName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if textsafe.IsHidden(r) || r == ' ' {
			return false
		}
	}
	return true
}

// findOperator resolves who ("" for op itself, an operator ID or an
// exact name) to an operator that is not disabled.
func (s *Service) findOperator(ctx context.Context, action string, op Operator, who string) (store.OperatorAccount, error) {
	ops, err := s.st.ListOperators(ctx)
	if err != nil {
		return store.OperatorAccount{}, err
	}
	if who == "" {
		who = op.ID
	}
	var found []store.OperatorAccount
	for _, o := range ops {
		if o.ID == who {
			found = []store.OperatorAccount{o}
			break
		}
		if o.Name == who {
			found = append(found, o)
		}
	}
	switch {
	case len(found) == 0:
		return store.OperatorAccount{}, refused(action, ErrNotFound, "operator", "no operator %s", truncate(who))
	case len(found) > 1:
		return store.OperatorAccount{}, refused(action, ErrAmbiguous, "operator", "more than one operator is called %s: use the operator ID", truncate(who))
	case !found[0].DisabledAt.IsZero():
		return store.OperatorAccount{}, refused(action, ErrConflict, "disabled", "operator %s is disabled", truncate(who))
	}
	if found[0].ID != op.ID && op.Role != auth.RoleAdmin {
		return store.OperatorAccount{}, refused(action, ErrForbidden, "operator", "only an admin manages another operator's API tokens")
	}
	return found[0], nil
}

// NewOperatorToken is a token to make.
type NewOperatorToken struct {
	// For is the operator ("" for oneself; an ID or exact name).
	For  string
	Name string
	// TTL is the lifetime; 0 for auth.DefaultOperatorTokenTTL.
	TTL time.Duration
}

// CreateOperatorToken makes a named API token, shown once; audited
// operator.token-create. With op's bootstrap token (single use), this is
// the one call it allows, and it ends with it (audited
// operator.token-revoke). Refusals: ErrInvalid (name, ttl), ErrNotFound,
// ErrAmbiguous (operator), ErrForbidden (another operator, not admin),
// ErrConflict (disabled operator), ErrExists (a live token of that name).
func (s *Service) CreateOperatorToken(ctx context.Context, op Operator, n NewOperatorToken) (store.OperatorToken, auth.Secret, error) {
	const action = "operator.token-create"
	name := strings.TrimSpace(n.Name)
	if !validTokenName(name) {
		return store.OperatorToken{}, "", invalid(action, "name", "give the token a name of at most %d characters, without spaces or control characters", MaxTokenName)
	}
	ttl := n.TTL
	if ttl == 0 {
		ttl = auth.DefaultOperatorTokenTTL
	}
	if ttl < auth.MinOperatorTokenTTL || ttl > auth.MaxOperatorTokenTTL {
		return store.OperatorToken{}, "", invalid(action, "ttl", "a token lasts between %s and %d days", auth.MinOperatorTokenTTL, int(auth.MaxOperatorTokenTTL/(24*time.Hour)))
	}
	target, err := s.findOperator(ctx, action, op, n.For)
	if err != nil {
		return store.OperatorToken{}, "", err
	}
	now := s.now()
	expires := now.Add(ttl)
	capped := ""
	// A token made for oneself with a token ends no later than it
	// (except the bootstrap exchange, whose purpose is the first real one).
	if target.ID == op.ID && op.Token.ID != "" && !op.Token.SingleUse && expires.After(op.Token.ExpiresAt) {
		expires, capped = op.Token.ExpiresAt, " (capped at the expiry of the token used)"
	}
	if op.Token.SingleUse {
		if target.ID != op.ID {
			return store.OperatorToken{}, "", refused(action, ErrForbidden, "operator", "the bootstrap token can only make your own first token")
		}
		// Spent first: of two calls racing with it, one wins.
		err := s.audited(ctx, op, "operator.token-revoke", op.ID, fmt.Sprintf("name=%s (bootstrap token, ended at its first use)", op.Token.Name), func(ctx context.Context) error {
			return s.st.UseOperatorToken(ctx, op.Token.ID, now)
		})
		if errors.Is(err, store.ErrNotFound) {
			return store.OperatorToken{}, "", refused(action, ErrForbidden, "token", "the bootstrap token was already used")
		}
		if err != nil {
			return store.OperatorToken{}, "", err
		}
	}
	tok := auth.NewToken(auth.OperatorTokenPrefix)
	t := store.OperatorToken{ID: uuid.NewString(), OperatorID: target.ID, Name: name, Hash: auth.HashToken(tok.Reveal()),
		CreatedBy: op.ID, CreatedAt: now, ExpiresAt: expires}
	err = s.audited(ctx, op, action, target.ID, fmt.Sprintf("name=%s operator=%s expires=%s%s", name, target.Name, expires.UTC().Format(time.RFC3339), capped), func(ctx context.Context) error {
		return s.st.CreateOperatorToken(ctx, t)
	})
	if errors.Is(err, store.ErrConflict) {
		return store.OperatorToken{}, "", refused(action, ErrExists, "name", "%s already has a token called %s: revoke it first, or choose another name", truncate(target.Name), truncate(name))
	}
	if err != nil {
		return store.OperatorToken{}, "", storeRefusal(action, "operator", err)
	}
	t.Hash = nil
	return t, tok, nil
}

// ListOperatorTokens lists op's own tokens, or with all (admin only)
// every operator's; never a hash or a token.
func (s *Service) ListOperatorTokens(ctx context.Context, op Operator, all bool) ([]store.OperatorTokenInfo, error) {
	const action = "operator.token-list"
	if all && op.Role != auth.RoleAdmin {
		return nil, refused(action, ErrForbidden, "all", "only an admin lists every operator's tokens")
	}
	id := op.ID
	if all {
		id = ""
	}
	return s.st.ListOperatorTokens(ctx, id)
}

// RevokeOperatorToken revokes the live token called name of operator who
// ("" for oneself); audited operator.token-revoke. Refusals: those of
// findOperator, ErrNotFound (no live token of that name).
func (s *Service) RevokeOperatorToken(ctx context.Context, op Operator, who, name string) (store.OperatorToken, error) {
	const action = "operator.token-revoke"
	name = strings.TrimSpace(name)
	if !validTokenName(name) {
		return store.OperatorToken{}, invalid(action, "name", "name the token to revoke (mamorictl api-token list)")
	}
	target, err := s.findOperator(ctx, action, op, who)
	if err != nil {
		return store.OperatorToken{}, err
	}
	var t store.OperatorToken
	err = s.audited(ctx, op, action, target.ID, fmt.Sprintf("name=%s operator=%s", name, target.Name), func(ctx context.Context) error {
		var err error
		t, err = s.st.RevokeOperatorToken(ctx, target.ID, name, op.ID, s.now())
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.OperatorToken{}, refused(action, ErrNotFound, "name", "%s has no live token called %s", truncate(target.Name), truncate(name))
	}
	return t, err
}
