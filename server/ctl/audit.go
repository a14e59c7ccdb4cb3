package ctl

import (
	"context"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/audit"
)

// auditPage is how many records one ListAudit call asks for.
const auditPage = 1000

// maxUnsigned is how many records may follow the last good checkpoint:
// the server signs the head before the first page and every 100 records,
// so more means checkpoints were removed.
const maxUnsigned = 1000

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
	// The chain is recomputed here, from the records as stored: a server
	// that was tampered with cannot vouch for itself.
	var v audit.Verifier
	var after int64
	for {
		resp, err := call(ctx, c, cn, cn.admin.ListAudit, &mamoriv1.ListAuditRequest{AfterSeq: after, PageSize: auditPage})
		if err != nil {
			return err
		}
		if after == 0 {
			// The CA pinned for this connection signs the checkpoints.
			ca := cn.ca()
			if ca == nil {
				return fmt.Errorf("audit verify: the server's CA certificate is not known")
			}
			v.Signed(audit.CheckCA(ca))
		}
		for _, r := range resp.Records {
			v.Add(audit.Record{Seq: r.Seq, At: r.At.AsTime(), Actor: r.Actor, Action: r.Action, Target: r.Target,
				Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash})
		}
		if resp.NextAfterSeq == 0 || resp.NextAfterSeq <= after {
			break
		}
		after = resp.NextAfterSeq
	}
	lastSeq, head := v.Head()
	// The server checkpoints before the first page is read: records after
	// the last good checkpoint are only those appended while reading.
	unsigned := lastSeq - v.SignedThrough()
	if v.Checkpoints() > 0 {
		unsigned-- // the checkpoint record itself
	}
	if v.OK() && v.Records() > 0 && (v.SignedThrough() == 0 || unsigned > maxUnsigned) {
		return localizedError{c.p.Sprintf("ctl.audit.unsigned", maxUnsigned)}
	}
	if v.OK() {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.ok", v.Records(), short(head)))
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.signed", v.SignedThrough(), v.Checkpoints(), max(unsigned, 0)))
		return nil
	}
	breaks := v.Breaks()
	for _, b := range breaks {
		r := b.Record
		what := sanitizeText(fmt.Sprintf("%s %s %s %s", c.localTime(timestamppb.New(r.At)), r.Actor, r.Action, r.Target))
		switch b.Kind {
		case audit.Gap:
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.gap", b.Seq, b.PrevSeq, what))
		case audit.Link:
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.link", b.Seq, b.PrevSeq, short(b.Stored), short(b.Computed), what))
		case audit.Content:
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.hash", b.Seq, short(b.Stored), short(b.Computed), what))
		case audit.Checkpoint:
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.audit.checkpoint", b.Seq, b.Why, what))
		}
	}
	return localizedError{c.p.Sprintf("ctl.audit.broken", len(breaks), v.Records(), breaks[0].Seq)}
}
