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
// then appends it on its own (PendingAudit.Taken says which).

// PendingAudit is an audit record waiting for its action's transaction.
type PendingAudit struct {
	mu     sync.Mutex
	rec    AuditRecord
	state  int // 0 waiting, 1 claimed by a transaction in progress, 2 committed
	stored AuditRecord
}

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

// ClaimAudit is for backends: the record to append in the transaction
// about to commit, if ctx carries one nobody has taken. The backend calls
// done with the stored record after the commit, or with ok=false when the
// transaction failed (the record is then free for another try).
func ClaimAudit(ctx context.Context) (rec AuditRecord, done func(stored AuditRecord, ok bool), claimed bool) {
	p, _ := ctx.Value(pendingAuditKey{}).(*PendingAudit)
	if p == nil {
		return AuditRecord{}, nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != 0 {
		return AuditRecord{}, nil, false
	}
	p.state = 1
	return p.rec, func(stored AuditRecord, ok bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if ok {
			p.state, p.stored = 2, stored
		} else {
			p.state = 0
		}
	}, true
}
