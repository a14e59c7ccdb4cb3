package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

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
	rs, err := list(ctx, s, scanAudit, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, codec.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return rs, nil
}

// AuditHead returns the last record of the chain (ErrNotFound when the
// log is empty).
func (s *Store) AuditHead(ctx context.Context) (store.AuditRecord, error) {
	rs, err := list(ctx, s, scanAudit, `SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("audit head: %w", err)
	}
	if len(rs) == 0 {
		return store.AuditRecord{}, store.ErrNotFound
	}
	return rs[0], nil
}

// ListAuditPage returns one page of the records q selects, in seq order
// (descending with q.Desc), starting after (before) q.Cursor. The seq
// primary key drives the page; the filters are conditions on it, so a
// page reads no more of the log than it scans to fill its rows.
func (s *Store) ListAuditPage(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	if q.Limit < 1 || q.Limit > store.MaxAuditPage || q.Cursor < 0 {
		return nil, fmt.Errorf("list audit page: a page of %d after %d", q.Limit, q.Cursor)
	}
	if len(q.Actors) > store.MaxAuditFilterValues || len(q.Devices) > store.MaxAuditFilterValues {
		return nil, fmt.Errorf("list audit page: more than %d actors or devices", store.MaxAuditFilterValues)
	}
	// Text no record can hold (invalid UTF-8, NUL: PostgreSQL refuses
	// it as an argument) matches nothing.
	if !storable(q.Action) {
		return nil, nil
	}
	if q.Actors != nil {
		q.Actors = slices.DeleteFunc(slices.Clone(q.Actors), func(a string) bool { return !storable(a) })
		if len(q.Actors) == 0 {
			return nil, nil
		}
	}
	q.Devices = slices.DeleteFunc(slices.Clone(q.Devices), func(d string) bool { return d == "" || !storable(d) })
	if q.Devices != nil && len(q.Devices) == 0 {
		return nil, nil
	}
	var args bindings
	conds := []string{"1 = 1"}
	if q.Cursor > 0 {
		op := ">"
		if q.Desc {
			op = "<"
		}
		conds = append(conds, "seq "+op+" "+args.bind(q.Cursor))
	}
	if len(q.Actors) > 0 {
		c, a := s.d.AnyOf("actor", q.Actors)
		conds = append(conds, c)
		args = append(args, a...)
	}
	if q.Action != "" {
		// A prefix by substr, not LIKE: no escaping, the same
		// (case-sensitive) meaning on both backends.
		prefix := q.Action + "."
		conds = append(conds, "(action = "+args.bind(q.Action)+" OR substr(action, 1, "+
			args.bind(utf8.RuneCountInString(prefix))+") = "+args.bind(prefix)+")")
	}
	if len(q.Devices) > 0 {
		var actors, ids []string
		for _, d := range q.Devices {
			actors, ids = append(actors, "device:"+d), append(ids, d)
		}
		c, a := s.d.AnyOf("actor", actors)
		args = append(args, a...)
		var or []string
		for _, d := range ids {
			// "target contains d", the same on both backends.
			or = append(or, "replace(target, "+args.bind(d)+", '') <> target")
		}
		conds = append(conds, "("+c+" OR "+strings.Join(or, " OR ")+")")
	}
	if !q.From.IsZero() {
		conds = append(conds, "at >= "+args.bind(s.d.Stamp(q.From)))
	}
	if !q.To.IsZero() {
		conds = append(conds, "at < "+args.bind(s.d.Stamp(q.To)))
	}
	dir := "ASC"
	if q.Desc {
		dir = "DESC"
	}
	sqlText := `SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit WHERE ` +
		strings.Join(conds, " AND ") + " ORDER BY seq " + dir + " LIMIT " + args.bind(q.Limit)
	rs, err := list(ctx, s, scanAudit, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit page: %w", err)
	}
	return rs, nil
}

// storable: text a record's field can hold.
func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func scanAudit(row Rows) (store.AuditRecord, error) {
	var (
		r  store.AuditRecord
		at Time
	)
	err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Detail, &r.PrevHash, &r.Hash)
	r.At = at.T
	return r, err
}
