package web

// The evidence report's list of changes (issue #19): each policy change,
// exception, revocation, ledger import and operator or MFA change of the
// period individually — who, when, what, why — not only counts. Kept
// apart from evidence.go: one more read of the audit log, in pages.

import (
	"context"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
)

// changeActions are the audit actions the report lists one by one.
var changeActions = map[string]bool{
	"policy.set": true, "exception.create": true, "exception.revoke": true, "device.revoke": true,
	"device.approve-reenrolment": true, "device.group": true, "ledger.import": true, "token.create": true,
	"operator.create": true, "operator.disable": true, "operator.unlock": true, "operator.password-reset": true,
	"operator.totp-reset": true, "operator.console-login": true, "mfa.enroll": true, "mfa.reset": true,
}

// maxChangeRows bounds the list in one report; the CSV of the audit log
// page has every record.
const maxChangeRows = 2000

type changeRow struct {
	Seq            int64
	At             time.Time
	Who, Action    string
	Target, Detail string
}

type changeList struct {
	Rows []changeRow
	More int // changes past maxChangeRows
}

// periodChanges lists the period's changes in order.
func (c *Console) periodChanges(ctx context.Context, p *i18n.Printer, from, to time.Time) (changeList, error) {
	var out changeList
	names := map[string]string{}
	after := int64(0)
	for {
		rs, err := c.st.ListAudit(ctx, after, auditPageRead)
		if err != nil {
			return out, err
		}
		for _, r := range rs {
			if r.At.Before(from) || !r.At.Before(to) || !changeActions[r.Action] {
				continue
			}
			if len(out.Rows) == maxChangeRows {
				out.More++
				continue
			}
			who, ok := names[r.Actor]
			if !ok {
				who = r.Actor
				if o, err := c.st.GetOperator(ctx, r.Actor); err == nil {
					who = o.Name
				} else if r.Actor == "system" {
					who = p.Sprintf("console.audit.system")
				}
				names[r.Actor] = who
			}
			out.Rows = append(out.Rows, changeRow{Seq: r.Seq, At: r.At, Who: visible(who), Action: actionName(p, r.Action),
				Target: visible(r.Target), Detail: visible(strings.TrimSpace(r.Detail))})
		}
		if len(rs) < auditPageRead {
			break
		}
		after = rs[len(rs)-1].Seq
	}
	return out, nil
}
