package web

import (
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
)

// controlDetail is a control's detail in the reader's language
// (i18n.StatusDetail); the template escapes it like any agent text.
func controlDetail(p *i18n.Printer, s *mamoriv1.ControlStatus) string {
	return i18n.StatusDetail(p, s.GetDetail(), s.GetDetailId(), s.GetDetailArgs(), s.GetDetailParts())
}

// localReasons shows stored non-compliance reasons in the reader's
// language. Reasons are stored in English (server/compliance); one is
// translated only when it is exactly what compliance builds: for a control,
// from the device's current status of that control (the report the verdict
// came from), so its detail can be shown as the agent's message. Anything
// else is shown as stored.
func localReasons(p *i18n.Printer, reasons []string, controls []*mamoriv1.ControlRecord) []string {
	if len(reasons) == 0 {
		return reasons
	}
	byReason := make(map[string]*mamoriv1.ControlStatus, len(controls))
	for _, cr := range controls {
		if s := cr.GetStatus(); s != nil && s.GetState() != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
			byReason[compliance.Reason(s.GetControl(), s.GetState(), s.GetDetail())] = s
		}
	}
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = r
		if s, ok := byReason[r]; ok {
			if d := controlDetail(p, s); d != "" {
				out[i] = p.Sprintf("console.reason.control", controlName(p, s.GetControl()), stateName(p, s.GetState()), d)
			} else {
				out[i] = p.Sprintf("console.reason.control-bare", controlName(p, s.GetControl()), stateName(p, s.GetState()))
			}
			continue
		}
		if r == compliance.ReasonTPMKeyNotAttested {
			out[i] = p.Sprintf("console.reason.tpm-key")
			continue
		}
		if name, ok := strings.CutSuffix(r, ": not reported"); ok && compliance.NotReportedReason(name) == r {
			out[i] = p.Sprintf("console.reason.not-reported", controlName(p, name))
		}
	}
	return out
}
