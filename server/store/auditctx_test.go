package store

import (
	"context"
	"testing"
)

// A transaction body that runs twice (a retried transaction) records each
// fact once; nothing changes a record once a transaction has claimed it;
// a context without a record ignores both.
func TestAuditAmendments(t *testing.T) {
	ctx, p := WithAudit(context.Background(), AuditRecord{Actor: "op", Action: "x", Detail: "base"})
	for range 2 {
		AuditField(ctx, "generation", "1")
		AuditField(ctx, "consumed", "2")
		AuditField(ctx, "generation", "3")
		AmendAudit(ctx, func(r *AuditRecord) { r.Target = "dev-1" })
	}
	if r := p.Record(); r.Detail != "base generation=3 consumed=2" || r.Target != "dev-1" {
		t.Fatalf("record %+v", r)
	}
	rec, done, ok := ClaimAudit(ctx)
	if !ok || rec.Detail != "base generation=3 consumed=2" {
		t.Fatalf("claimed %+v %v", rec, ok)
	}
	AuditField(ctx, "late", "1")
	AmendAudit(ctx, func(r *AuditRecord) { r.Target = "other" })
	if r := p.Record(); r.Target != "dev-1" || r.Detail != "base generation=3 consumed=2" {
		t.Fatalf("amended after the claim: %+v", r)
	}
	done(rec, false) // the transaction failed: free again, unchanged
	if _, ok := p.Taken(); ok {
		t.Fatal("taken after a failed commit")
	}
	if _, _, ok := ClaimAudit(ctx); !ok {
		t.Fatal("not claimable after a failed commit")
	}

	empty := context.Background()
	AuditField(empty, "k", "v")
	AmendAudit(empty, func(*AuditRecord) { t.Fatal("amended a context without a record") })
	if _, _, ok := ClaimAudit(empty); ok {
		t.Fatal("claimed from a context without a record")
	}

	// An empty base detail gets no leading space.
	ctx, p = WithAudit(context.Background(), AuditRecord{})
	AuditField(ctx, "k", "v")
	if d := p.Record().Detail; d != "k=v" {
		t.Fatalf("detail %q", d)
	}
}
