package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// CurrentPolicy returns the newest policy version.
func (s *Store) CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error) {
	var blob []byte
	err := s.read(ctx, func(q Q) error {
		return queryRow(ctx, q, "SELECT policy FROM policies ORDER BY version DESC LIMIT 1").Scan(&blob)
	})
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("policy: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("current policy: %w", err)
	}
	p := &mamoriv1.Policy{}
	if err := codec.Unmarshal("policy", blob, p); err != nil {
		return nil, err
	}
	return p, nil
}

// SetPolicy stores c.Policy as version expectedVersion+1. Two servers
// racing for one version both pass the check; the primary key lets one
// insert win and the other gets ErrConflict.
func (s *Store) SetPolicy(ctx context.Context, c store.PolicyChange, expectedVersion int64) (*mamoriv1.Policy, error) {
	p := &mamoriv1.Policy{}
	if c.Policy != nil {
		p = proto.CloneOf(c.Policy)
	}
	p.Version = expectedVersion + 1
	blob, err := codec.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("set policy: %w", err)
	}
	err = s.write(ctx, func(q Q) error {
		var cur int64
		if err := queryRow(ctx, q, "SELECT coalesce(max(version), 0) FROM policies").Scan(&cur); err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		if cur != expectedVersion {
			return fmt.Errorf("set policy: current version is %d, not %d: %w", cur, expectedVersion, store.ErrConflict)
		}
		_, err := q.Exec(ctx, "INSERT INTO policies (version, policy, actor, reason, at) VALUES (?, ?, ?, ?, ?)",
			p.Version, blob, c.Actor, c.Reason, s.d.Stamp(c.At))
		if s.d.IsUnique(err) {
			return fmt.Errorf("set policy: version %d was set concurrently: %w", p.Version, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// PolicyHistory returns policy versions, newest first.
func (s *Store) PolicyHistory(ctx context.Context, limit int) ([]store.PolicyChange, error) {
	cs, err := list(ctx, s, func(r Rows) (store.PolicyChange, error) {
		var (
			c    store.PolicyChange
			blob []byte
			at   Time
		)
		if err := r.Scan(&blob, &c.Actor, &c.Reason, &at); err != nil {
			return c, err
		}
		c.Policy, c.At = &mamoriv1.Policy{}, at.T
		return c, codec.Unmarshal("policy", blob, c.Policy)
	}, "SELECT policy, actor, reason, at FROM policies ORDER BY version DESC LIMIT ?", codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	return cs, nil
}
