package web

import (
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
)

// controlDetail is a control's detail in the reader's language: the
// catalogue message the agent named (detail_id) with its arguments, when
// this server knows that "detail.*" message and the argument count fits;
// the agent's English detail otherwise (older agents, newer IDs, a
// mismatch). A detail listing several problems (detail_parts) shows each
// in the reader's language when every one is known, else their English
// list. The template escapes the result like any agent text.
func controlDetail(p *i18n.Printer, s *mamoriv1.ControlStatus) string {
	id, args := s.GetDetailId(), s.GetDetailArgs()
	if id == "" {
		return s.GetDetail()
	}
	if parts := s.GetDetailParts(); len(parts) > 0 && len(args) > 0 {
		if list, ok := detailList(p, parts); ok {
			args = append(slices.Clone(args[:len(args)-1]), list)
		}
	}
	if t, ok := p.Detail(i18n.ID(id), args); ok {
		return t
	}
	return s.GetDetail()
}

// detailList is parts in the reader's language, joined; ok is false when
// one of them is not a message this server can show.
func detailList(p *i18n.Printer, parts []*mamoriv1.DetailPart) (string, bool) {
	texts := make([]string, len(parts))
	for i, pt := range parts {
		t, ok := p.Detail(i18n.ID(pt.GetId()), pt.GetArgs())
		if !ok {
			return "", false
		}
		texts[i] = t
	}
	return strings.Join(texts, p.Sprintf("console.detail.sep")), true
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
				out[i] = p.Sprintf("console.reason.control", s.GetControl(), stateName(p, s.GetState()), d)
			} else {
				out[i] = p.Sprintf("console.reason.control-bare", s.GetControl(), stateName(p, s.GetState()))
			}
			continue
		}
		if r == compliance.ReasonTPMKeyNotAttested {
			out[i] = p.Sprintf("console.reason.tpm-key")
			continue
		}
		if name, ok := strings.CutSuffix(r, ": not reported"); ok && compliance.NotReportedReason(name) == r {
			out[i] = p.Sprintf("console.reason.not-reported", name)
		}
	}
	return out
}
