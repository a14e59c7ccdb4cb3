package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// ListEvents returns stored events, newest first.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]store.StoredEvent, error) {
	q := "SELECT seq, device_id, event, received_at FROM events WHERE TRUE"
	var args []any
	if f.DeviceID != "" {
		q += " AND device_id = ?"
		args = append(args, f.DeviceID)
	}
	if f.BeforeSeq > 0 {
		q += " AND seq < ?"
		args = append(args, f.BeforeSeq)
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, codec.Limit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var evs []store.StoredEvent
	for rows.Next() {
		var (
			e    store.StoredEvent
			blob []byte
			at   int64
		)
		if err := rows.Scan(&e.Seq, &e.DeviceID, &blob, &at); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Event = &mamoriv1.Event{}
		if err := codec.Unmarshal(fmt.Sprintf("event %d", e.Seq), blob, e.Event); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.ReceivedAt = codec.FromMicros(at, true)
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return evs, nil
}

// CountEvents counts a device's events, or all with an empty ID.
func (s *Store) CountEvents(ctx context.Context, deviceID string) (int64, error) {
	q, args := "SELECT count(*) FROM events", []any{}
	if deviceID != "" {
		q, args = q+" WHERE device_id = ?", append(args, deviceID)
	}
	var n int64
	if err := s.r.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// CreateOperator stores an operator; a taken ID or token hash is ErrConflict.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO operators (id, name, role, token_hash, created_at, disabled_at)
			VALUES (?, ?, ?, ?, ?, ?)`, o.ID, o.Name, o.Role, o.TokenHash,
			codec.Time(o.CreatedAt).UnixMicro(), codec.Micros(codec.Time(o.DisabledAt)))
		if isUnique(err) {
			return fmt.Errorf("create operator %s: %w", o.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create operator %s: %w", o.ID, err)
		}
		return nil
	})
}

// OperatorByTokenHash finds the operator whose API token hashes to hash.
// A disabled operator is returned too; the caller checks DisabledAt.
func (s *Store) OperatorByTokenHash(ctx context.Context, hash []byte) (store.Operator, error) {
	var (
		o        store.Operator
		created  int64
		disabled sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, name, role, token_hash, created_at, disabled_at
		FROM operators WHERE token_hash = ?`, hash).Scan(&o.ID, &o.Name, &o.Role, &o.TokenHash, &created, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Operator{}, fmt.Errorf("operator: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Operator{}, fmt.Errorf("operator by token: %w", err)
	}
	o.CreatedAt, o.DisabledAt = codec.FromMicros(created, true), ts(disabled)
	return o, nil
}

// CountOperators counts operators.
func (s *Store) CountOperators(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM operators").Scan(&n); err != nil {
		return 0, fmt.Errorf("count operators: %w", err)
	}
	return n, nil
}

// CurrentPolicy returns the newest policy version.
func (s *Store) CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error) {
	var blob []byte
	err := s.r.QueryRowContext(ctx, "SELECT policy FROM policies ORDER BY version DESC LIMIT 1").Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
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

// SetPolicy stores c.Policy as version expectedVersion+1.
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
	err = s.write(ctx, func(tx *sql.Tx) error {
		var cur int64
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM policies").Scan(&cur); err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		if cur != expectedVersion {
			return fmt.Errorf("set policy: current version is %d, not %d: %w", cur, expectedVersion, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO policies (version, policy, actor, reason, at) VALUES (?, ?, ?, ?, ?)",
			p.Version, blob, c.Actor, c.Reason, codec.Time(c.At).UnixMicro()); err != nil {
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
	rows, err := s.r.QueryContext(ctx, "SELECT policy, actor, reason, at FROM policies ORDER BY version DESC LIMIT ?", codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	defer rows.Close()
	var cs []store.PolicyChange
	for rows.Next() {
		var (
			c    store.PolicyChange
			blob []byte
			at   int64
		)
		if err := rows.Scan(&blob, &c.Actor, &c.Reason, &at); err != nil {
			return nil, fmt.Errorf("policy history: %w", err)
		}
		c.Policy = &mamoriv1.Policy{}
		if err := codec.Unmarshal("policy", blob, c.Policy); err != nil {
			return nil, fmt.Errorf("policy history: %w", err)
		}
		c.At = codec.FromMicros(at, true)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	return cs, nil
}

// AppendAudit appends r to the chain. The single writer connection makes
// reading the tail and appending one step, so the chain stays linear.
func (s *Store) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = appendAuditTx(ctx, tx, r)
		return err
	})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return r, nil
}

// appendAuditTx appends r to the chain inside tx (the single writer
// serialises the chain).
func appendAuditTx(ctx context.Context, tx *sql.Tx, r store.AuditRecord) (store.AuditRecord, error) {
	r.At = codec.Time(r.At)
	r.Seq, r.PrevHash, r.Hash = 0, nil, nil
	var prev []byte
	err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&r.Seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("append audit: read tail: %w", err)
	}
	r.Seq++
	r.PrevHash = prev
	r.Hash = store.AuditHash(prev, r)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (seq, at, actor, action, target, detail, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.Seq, r.At.UnixMicro(), r.Actor, r.Action, r.Target, r.Detail, r.PrevHash, r.Hash); err != nil {
		return r, fmt.Errorf("append audit: %w", err)
	}
	return r, nil
}

// ListAudit returns audit records after afterSeq, oldest first.
func (s *Store) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var rs []store.AuditRecord
	for rows.Next() {
		var (
			r  store.AuditRecord
			at int64
		)
		if err := rows.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Detail, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		r.At = codec.FromMicros(at, true)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return rs, nil
}
