package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
	"github.com/mamori-dev/mamori/server/store/internal/sqlstore"
)

// ListEvents returns stored events, newest first.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]store.StoredEvent, error) {
	a := sqlstore.Args{Dollar: true}
	q := "SELECT seq, device_id, event, received_at FROM events WHERE TRUE"
	if f.DeviceID != "" {
		q += " AND device_id = " + a.Bind(f.DeviceID)
	}
	if f.BeforeSeq > 0 {
		q += " AND seq < " + a.Bind(f.BeforeSeq)
	}
	q += " ORDER BY seq DESC LIMIT " + a.Bind(codec.Limit(f.Limit))
	rows, err := s.pool.Query(ctx, q, a.List...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.StoredEvent, error) {
		var (
			e    store.StoredEvent
			blob []byte
			at   time.Time
		)
		if err := r.Scan(&e.Seq, &e.DeviceID, &blob, &at); err != nil {
			return e, err
		}
		e.Event, e.ReceivedAt = &mamoriv1.Event{}, codec.Time(at)
		return e, codec.Unmarshal(fmt.Sprintf("event %d", e.Seq), blob, e.Event)
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return evs, nil
}

// CountEvents counts a device's events, or all with an empty ID.
func (s *Store) CountEvents(ctx context.Context, deviceID string) (int64, error) {
	q, args := "SELECT count(*) FROM events", []any{}
	if deviceID != "" {
		q, args = q+" WHERE device_id = $1", append(args, deviceID)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// CreateOperator stores an operator; a taken ID or token hash is ErrConflict.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	// In a transaction of its own so that an audited call (store.WithAudit)
	// commits its record with it.
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO operators (id, name, role, token_hash, created_at, disabled_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, o.ID, o.Name, o.Role, o.TokenHash, codec.Time(o.CreatedAt), tz(o.DisabledAt))
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("create operator %s: %w", o.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create operator %s: %w", o.ID, err)
	}
	return nil
}

// OperatorByTokenHash finds the operator whose API token hashes to hash.
// A disabled operator is returned too; the caller checks DisabledAt.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash []byte) (store.Operator, error) {
	var (
		o        store.Operator
		created  time.Time
		disabled *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, token_hash, created_at, disabled_at
		FROM operators WHERE token_hash = $1`, hash).Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Operator{}, fmt.Errorf("operator: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("operator by token: %w", err)
	}
	o.CreatedAt, o.DisabledAt = codec.Time(created), ts(disabled)
	return o, nil
}

// CountOperators counts operators.
func (s *Store) CountOperators(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM operators").Scan(&n); err != nil {
		return 0, fmt.Errorf("count operators: %w", err)
	}
	return n, nil
}

// CurrentPolicy returns the newest policy version.
func (s *Store) CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error) {
	var blob []byte
	err := s.pool.QueryRow(ctx, "SELECT policy FROM policies ORDER BY version DESC LIMIT 1").Scan(&blob)
	if errors.Is(err, pgx.ErrNoRows) {
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
	err = s.write(ctx, func(tx pgx.Tx) error {
		var cur int64
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM policies").Scan(&cur); err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		if cur != expectedVersion {
			return fmt.Errorf("set policy: current version is %d, not %d: %w", cur, expectedVersion, store.ErrConflict)
		}
		_, err := tx.Exec(ctx, "INSERT INTO policies (version, policy, actor, reason, at) VALUES ($1, $2, $3, $4, $5)",
			p.Version, blob, c.Actor, c.Reason, codec.Time(c.At))
		if isUnique(err) {
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
	rows, err := s.pool.Query(ctx, "SELECT policy, actor, reason, at FROM policies ORDER BY version DESC LIMIT $1", codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PolicyChange, error) {
		var (
			c    store.PolicyChange
			blob []byte
			at   time.Time
		)
		if err := r.Scan(&blob, &c.Actor, &c.Reason, &at); err != nil {
			return c, err
		}
		c.Policy, c.At = &mamoriv1.Policy{}, codec.Time(at)
		return c, codec.Unmarshal("policy", blob, c.Policy)
	})
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	return cs, nil
}

// AppendAudit appends r to the chain. An advisory lock makes reading the
// tail and appending one step across every server on the database, so the
// chain stays linear.
func (s *Store) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		r, err = appendAuditTx(ctx, tx, r)
		return err
	})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return r, nil
}

// appendAuditTx appends r to the chain inside tx; the advisory lock
// serialises appenders until the transaction ends, so the chain has no
// fork.
func appendAuditTx(ctx context.Context, tx pgx.Tx, r store.AuditRecord) (store.AuditRecord, error) {
	r.At = codec.Time(r.At)
	r.Seq, r.PrevHash, r.Hash = 0, nil, nil
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockAudit); err != nil {
		return r, fmt.Errorf("append audit: lock: %w", err)
	}
	var prev []byte
	err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&r.Seq, &prev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("append audit: read tail: %w", err)
	}
	r.Seq++
	r.PrevHash = prev
	r.Hash = store.AuditHash(prev, r)
	if _, err := tx.Exec(ctx, `INSERT INTO audit (seq, at, actor, action, target, detail, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, r.Seq, r.At, r.Actor, r.Action, r.Target, r.Detail, r.PrevHash, r.Hash); err != nil {
		return r, fmt.Errorf("append audit: %w", err)
	}
	return r, nil
}

// ListAudit returns audit records after afterSeq, oldest first.
func (s *Store) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditRecord, error) {
		var (
			r  store.AuditRecord
			at time.Time
		)
		err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Detail, &r.PrevHash, &r.Hash)
		r.At = codec.Time(at)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return rs, nil
}
