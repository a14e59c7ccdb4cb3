package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// AppendAudit appends r to the chain.
func (s *Store) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	err := s.write(ctx, func(q Q) error {
		var err error
		r, err = s.appendAudit(ctx, q, r)
		return err
	})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return r, nil
}

// appendAudit appends r to the chain inside the write transaction q
// belongs to. Reading the tail and appending is one step for every server
// on the database (LockAudit until the transaction ends), so the chain
// stays linear: it has no fork.
func (s *Store) appendAudit(ctx context.Context, q Q, r store.AuditRecord) (store.AuditRecord, error) {
	r.At = codec.Time(r.At)
	r.Seq, r.PrevHash, r.Hash = 0, nil, nil
	if err := s.d.Lock(ctx, q, LockAudit); err != nil {
		return r, fmt.Errorf("append audit: lock: %w", err)
	}
	var prev []byte
	err := queryRow(ctx, q, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&r.Seq, &prev)
	if err != nil && !errors.Is(err, errNoRows) {
		return r, fmt.Errorf("append audit: read tail: %w", err)
	}
	r.Seq++
	r.PrevHash = prev
	r.Hash = store.AuditHash(prev, r)
	if _, err := q.Exec(ctx, `INSERT INTO audit (seq, at, actor, action, target, detail, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.Seq, s.d.Stamp(r.At), r.Actor, r.Action, r.Target, r.Detail, r.PrevHash, r.Hash); err != nil {
		return r, fmt.Errorf("append audit: %w", err)
	}
	return r, nil
}

// ListAudit returns audit records after afterSeq, oldest first.
func (s *Store) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	rs, err := list(ctx, s, func(row Rows) (store.AuditRecord, error) {
		var (
			r  store.AuditRecord
			at Time
		)
		err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Detail, &r.PrevHash, &r.Hash)
		r.At = at.T
		return r, err
	}, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return rs, nil
}

// AuditHead returns the last record of the chain (ErrNotFound when the
// log is empty).
func (s *Store) AuditHead(ctx context.Context) (store.AuditRecord, error) {
	rs, err := list(ctx, s, func(row Rows) (store.AuditRecord, error) {
		var (
			r  store.AuditRecord
			at Time
		)
		err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Detail, &r.PrevHash, &r.Hash)
		r.At = at.T
		return r, err
	}, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("audit head: %w", err)
	}
	if len(rs) == 0 {
		return store.AuditRecord{}, store.ErrNotFound
	}
	return rs[0], nil
}
