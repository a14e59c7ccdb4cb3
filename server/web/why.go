package web

// The device page's answer (issue #19): one sentence that says why this
// terminal is (or is not) compliant — which required control fails, since
// when, and what to do — then where each setting of its effective policy
// comes from (base policy, its 所属's override, an exception), and its
// entry in the asset ledger (端末台帳).

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/ledger"
	"github.com/mamori-dev/mamori/server/store"
)

// whyView is the answer in the page's header.
type whyView struct {
	// Sentence says what the state is and why; Todo what to do next.
	Sentence, Todo string
	// Class is the box's look: error (needs a person), notice, ok.
	Class string
	// Stale: the states shown are the last ones received (offline).
	Stale    bool
	StaleAt  time.Time
	Required []string // the required controls, by name in the reader's language
}

// policyRow is one control of the effective policy with its origin.
type policyRow struct {
	Control, Name, Mode, Scope string
	Required                   bool
	Settings                   []kv
}

func modeName(p *i18n.Printer, m mamoriv1.Mode) string {
	k := strings.ToLower(strings.TrimPrefix(m.String(), "MODE_"))
	if s, ok := p.Lookup(i18n.ID("console.mode." + k)); ok {
		return s
	}
	return k
}

// why builds the answer for d, whose effective policy is eff, from the
// stored base policy.
func (c *Console) why(p *i18n.Printer, d store.Device, base, eff *mamoriv1.Policy, row deviceRow, now time.Time) whyView {
	var w whyView
	for name, cp := range eff.GetControls() {
		if cp.GetRequired() {
			w.Required = append(w.Required, controlName(p, name))
		}
	}
	sort.Strings(w.Required)
	switch row.State {
	case mamoriv1.Compliance_COMPLIANCE_REVOKED:
		w.Class, w.Sentence = "error", p.Sprintf("console.why.revoked", c.formatTime(d.RevokedAt), visible(d.RevokedReason))
		return w
	case mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED:
		w.Class, w.Sentence, w.Todo = "notice", p.Sprintf("console.why.never", c.formatTime(d.EnrolledAt)), p.Sprintf("console.todo.never")
		return w
	case mamoriv1.Compliance_COMPLIANCE_OFFLINE:
		w.Class, w.Stale, w.StaleAt = "error", true, d.LastSeen
		w.Sentence = p.Sprintf("console.why.offline", c.formatTime(d.LastSeen), c.formatDuration(p, now.Sub(d.LastSeen)))
		w.Todo = p.Sprintf("console.todo.offline")
		if d.Verdict == store.VerdictNoncompliant {
			w.Todo += " " + p.Sprintf("console.why.offline-was-failing")
		}
		return w
	case mamoriv1.Compliance_COMPLIANCE_COMPLIANT:
		w.Class = "ok"
		if len(w.Required) == 0 {
			w.Sentence = p.Sprintf("console.why.compliant-none")
		} else {
			w.Sentence = p.Sprintf("console.why.compliant", strings.Join(w.Required, p.Sprintf("console.list-sep")))
		}
		return w
	}
	// Non-compliant: the first failing required control, as compliance
	// judged it (its reasons, sorted by control name).
	w.Class = "error"
	byName := map[string]*mamoriv1.ControlRecord{}
	for _, cr := range d.Controls {
		byName[cr.GetStatus().GetControl()] = cr
	}
	names := make([]string, 0, len(eff.GetControls()))
	for name := range eff.GetControls() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cp := eff.GetControls()[name]
		cr, reported := byName[name]
		violation := reported && cr.GetStatus().GetEvidence()[policy.EvidenceViolation] != ""
		if !cp.GetRequired() && !violation {
			continue
		}
		scope := scopeName(p, base, eff, name)
		switch {
		case !reported:
			w.Sentence = p.Sprintf("console.why.not-reported", controlName(p, name), scope)
		case cr.GetStatus().GetState() != mamoriv1.ControlState_CONTROL_STATE_ENFORCED:
			s := cr.GetStatus()
			w.Sentence = p.Sprintf("console.why.failing", controlName(p, name), scope, c.formatTime(cr.GetSince().AsTime()), stateName(p, s.GetState()))
			if d := controlDetail(p, s); d != "" {
				w.Sentence += " " + p.Sprintf("console.why.detail", d)
			}
		default:
			continue
		}
		w.Todo = p.Sprintf("console.todo.control")
		if t, ok := p.Lookup(i18n.ID("console.todo." + name)); ok {
			w.Todo = t
		}
		return w
	}
	for _, r := range d.Reasons {
		if r == compliance.ReasonTPMKeyNotAttested {
			w.Sentence, w.Todo = p.Sprintf("console.why.tpm"), p.Sprintf("console.todo.tpm")
			return w
		}
	}
	// The stored verdict names a reason the current policy no longer
	// has (the policy changed after the last report).
	w.Sentence = p.Sprintf("console.why.stale-verdict", strings.Join(row.Reasons, " / "))
	w.Todo = p.Sprintf("console.todo.wait-report")
	return w
}

// scopeName says where control name's setting in eff comes from: its
// 所属's override in the stored policy base, or the base policy.
func scopeName(p *i18n.Printer, base, eff *mamoriv1.Policy, name string) string {
	if g := eff.GetGroup(); g != "" {
		if _, ok := base.GetGroups()[g].GetControls()[name]; ok {
			return p.Sprintf("console.scope.group", visible(g))
		}
	}
	return p.Sprintf("console.scope.base")
}

// policyRows lists the effective policy's controls with their origin.
func policyRows(p *i18n.Printer, base, eff *mamoriv1.Policy) []policyRow {
	var out []policyRow
	for name, cp := range eff.GetControls() {
		r := policyRow{Control: name, Name: controlName(p, name), Mode: modeName(p, cp.GetMode()), Required: cp.GetRequired(),
			Scope: scopeName(p, base, eff, name)}
		for _, s := range sortedKV(cp.GetSettings()) {
			if s.K == policy.SettingExceptions {
				r.Scope += p.Sprintf("console.list-sep") + p.Sprintf("console.scope.exceptions", len(eff.GetExceptions()))
				continue
			}
			r.Settings = append(r.Settings, kv{K: evidenceKey(p, s.K), V: s.V})
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Control < out[j].Control })
	return out
}

// evidenceKey is an evidence or setting key in the reader's language, the
// key itself when the catalogue has none.
func evidenceKey(p *i18n.Printer, k string) string {
	if s, ok := p.Lookup(i18n.ID("console.key." + k)); ok {
		return s
	}
	return k
}

// ledgerEntry is d's entry in the asset ledger, if it has one.
func (c *Console) ledgerEntry(ctx context.Context, d store.Device) (*store.LedgerEntry, error) {
	l, err := c.st.Ledger(ctx)
	if err != nil || len(l.Entries) == 0 {
		return nil, err
	}
	for _, r := range ledger.Match(l.Entries, []store.Device{d}, func(store.Device) mamoriv1.Compliance { return 0 }) {
		if r.DeviceID == d.ID {
			e := r.Entry
			return &e, nil
		}
	}
	return nil, nil
}

// formatDuration is a rough "how long" in the reader's language.
func (c *Console) formatDuration(p *i18n.Printer, d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return p.Sprintf("console.dur.days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return p.Sprintf("console.dur.hours", int(d/time.Hour))
	default:
		return p.Sprintf("console.dur.minutes", max(int(d/time.Minute), 1))
	}
}

// evidenceKVs are a control's evidence, keys in the reader's language.
func evidenceKVs(p *i18n.Printer, m map[string]string) []kv {
	out := sortedKV(m)
	for i := range out {
		out[i].K = evidenceKey(p, out[i].K)
	}
	return out
}
