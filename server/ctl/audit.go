package ctl

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// auditPage is how many records one ListAudit call asks for.
const auditPage = 1000

// auditBreak is one place where the audit chain does not hold.
type auditBreak struct {
	Seq  int64
	Kind string // "gap", "link", "hash"
	// PrevSeq is the record before Seq in the log (gap, link).
	PrevSeq int64
	// Stored and Computed are the differing hashes (link: the stored
	// prev_hash and the previous record's hash; hash: the stored hash and
	// the one recomputed from the record's fields).
	Stored, Computed []byte
	Record           *mamoriv1.AuditRecord
}

// auditVerifier recomputes the chain record by record, across pages.
type auditVerifier struct {
	n        int64
	prevSeq  int64
	prevHash []byte
	breaks   []auditBreak
}

// add checks one record against the one before it. It trusts nothing the
// server computed: the link is the previous record's stored hash, and the
// record's own hash is recomputed from its fields with store.AuditHash.
func (v *auditVerifier) add(r *mamoriv1.AuditRecord) {
	v.n++
	if r.Seq != v.prevSeq+1 {
		v.breaks = append(v.breaks, auditBreak{Seq: r.Seq, Kind: "gap", PrevSeq: v.prevSeq, Record: r})
	}
	if !bytes.Equal(r.PrevHash, v.prevHash) {
		v.breaks = append(v.breaks, auditBreak{Seq: r.Seq, Kind: "link", PrevSeq: v.prevSeq,
			Stored: r.PrevHash, Computed: v.prevHash, Record: r})
	}
	want := store.AuditHash(r.PrevHash, store.AuditRecord{
		Seq: r.Seq, At: r.At.AsTime(), Actor: r.Actor, Action: r.Action, Target: r.Target, Detail: r.Detail,
	})
	if !bytes.Equal(want, r.Hash) {
		v.breaks = append(v.breaks, auditBreak{Seq: r.Seq, Kind: "hash", Stored: r.Hash, Computed: want, Record: r})
	}
	v.prevSeq, v.prevHash = r.Seq, r.Hash
}

func short(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return s
}

// auditVerify reads the whole audit log and recomputes its hash chain.
// A broken chain is exit 1, with one line per break naming the record.
func (c *cli) auditVerify(ctx context.Context, args []string) error {
	const cmd = "audit verify"
	fs := c.newFlagSet(cmd)
	if _, err := c.parse(fs, cmd, args, 0); err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	v := &auditVerifier{}
	var after int64
	for {
		resp, err := call(ctx, c, cn, cn.admin.ListAudit, &mamoriv1.ListAuditRequest{AfterSeq: after, PageSize: auditPage})
		if err != nil {
			return err
		}
		for _, r := range resp.Records {
			v.add(r)
		}
		if resp.NextAfterSeq == 0 || resp.NextAfterSeq <= after {
			break
		}
		after = resp.NextAfterSeq
	}
	if len(v.breaks) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.ok", v.n, short(v.prevHash)))
		return nil
	}
	for _, b := range v.breaks {
		r := b.Record
		what := sanitizeText(fmt.Sprintf("%s %s %s %s", c.localTime(r.At), r.Actor, r.Action, r.Target))
		switch b.Kind {
		case "gap":
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.gap", b.Seq, b.PrevSeq, what))
		case "link":
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.link", b.Seq, b.PrevSeq, short(b.Stored), short(b.Computed), what))
		case "hash":
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.hash", b.Seq, short(b.Stored), short(b.Computed), what))
		}
	}
	return localizedError{c.p.Sprintf("ctl.audit.broken", len(v.breaks), v.n, v.breaks[0].Seq)}
}
