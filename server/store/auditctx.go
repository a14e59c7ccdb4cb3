package store

import (
	"context"
	"sync"
)

// An audited action: the audit record rides in the context into the
// store, which appends it in the same transaction as the action's write,
// so the two are committed together or not at all — the log never misses
// an action that happened, and never records one that was rolled back.
//
// The first write transaction that commits under the context takes the
// record; later ones (and reads) leave it alone. An action whose store
// method writes nothing in a transaction leaves it untaken; the caller
// then appends it on its own (PendingAudit.Taken says which, and
// PendingAudit.Record gives the record as amended).
//
// What only the transaction knows goes into the record from inside it,
// before the commit claims it: AmendAudit for the caller's callbacks that
// run in the transaction (Enroll's Sign learns the device ID), AuditField
// for backends (the MFA generation a write produced). Both are idempotent,
// so a transaction that runs its body twice records each fact once.

// PendingAudit is an audit record waiting for its action's transaction.
type PendingAudit struct {
	mu     sync.Mutex
	rec    AuditRecord
	state  int // 0 waiting, 1 claimed by a transaction in progress, 2 committed
	stored AuditRecord
	fields []auditField // AuditField's, in the order first set
}

type auditField struct{ key, value string }

type pendingAuditKey struct{}

// WithAudit returns ctx carrying r for the next write transaction.
func WithAudit(ctx context.Context, r AuditRecord) (context.Context, *PendingAudit) {
	p := &PendingAudit{rec: r}
	return context.WithValue(ctx, pendingAuditKey{}, p), p
}

// Taken reports whether a committed transaction appended the record, and
// the record as stored (Seq and hashes filled).
func (p *PendingAudit) Taken() (AuditRecord, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stored, p.state == 2
}

// Record is the record as it stands: the one WithAudit was given with
// every amendment and field so far.
func (p *PendingAudit) Record() AuditRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.record()
}

func (p *PendingAudit) record() AuditRecord {
	r := p.rec
	for _, f := range p.fields {
		if r.Detail != "" {
			r.Detail += " "
		}
		r.Detail += f.key + "=" + f.value
	}
	return r
}

func pending(ctx context.Context) *PendingAudit {
	p, _ := ctx.Value(pendingAuditKey{}).(*PendingAudit)
	return p
}

// AmendAudit changes the audit record ctx carries, if it has one that no
// transaction has claimed yet. fn must set values, not append to them
// (it may run again when the transaction does); use AuditField to add to
// the detail.
func AmendAudit(ctx context.Context, fn func(r *AuditRecord)) {
	p := pending(ctx)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == 0 {
		fn(&p.rec)
	}
}

// AuditField adds key=value to the detail of the audit record ctx
// carries (if any, and not yet claimed), replacing the value an earlier
// call gave key.
func AuditField(ctx context.Context, key, value string) {
	p := pending(ctx)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != 0 {
		return
	}
	for i := range p.fields {
		if p.fields[i].key == key {
			p.fields[i].value = value
			return
		}
	}
	p.fields = append(p.fields, auditField{key, value})
}

// ClaimAudit is for backends: the record to append in the transaction
// about to commit, if ctx carries one nobody has taken. The backend calls
// done with the stored record after the commit, or with ok=false when the
// transaction failed (the record is then free for another try).
func ClaimAudit(ctx context.Context) (rec AuditRecord, done func(stored AuditRecord, ok bool), claimed bool) {
	p := pending(ctx)
	if p == nil {
		return AuditRecord{}, nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != 0 {
		return AuditRecord{}, nil, false
	}
	p.state = 1
	return p.record(), func(stored AuditRecord, ok bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if ok {
			p.state, p.stored = 2, stored
		} else {
			p.state = 0
		}
	}, true
}
