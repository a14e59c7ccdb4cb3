package i18n

import (
	"slices"
	"strings"
)

// DetailArgs is the number of arguments a message takes: the count of its
// verbs' distinct argument numbers, or -1 when its format is malformed.
func DetailArgs(m Message) int {
	vs, err := Verbs(m.En)
	if err != nil {
		return -1
	}
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		n, _, _ := strings.Cut(v, ":")
		seen[n] = true
	}
	return len(seen)
}

// Detail formats a control's detail that an agent reported as a message ID
// and its arguments (ControlStatus.detail_id, detail_args). ok is false —
// and the caller shows the agent's English detail instead — unless id is a
// "detail.*" message of the catalog that takes exactly len(args)
// arguments. Every detail message takes only %s verbs (TestDetailMessages),
// so whatever an argument holds is copied as text.
func (p *Printer) Detail(id ID, args []string) (s string, ok bool) {
	return p.withArgs("detail.", id, args)
}

// withArgs formats the catalog message id, which must start with prefix
// and take exactly len(args) arguments, with args as text; ok is false
// otherwise (Detail, IncidentSummary).
func (p *Printer) withArgs(prefix string, id ID, args []string) (s string, ok bool) {
	if !strings.HasPrefix(string(id), prefix) {
		return "", false
	}
	m, found := p.cat.Lookup(id)
	if !found || DetailArgs(m) != len(args) {
		return "", false
	}
	as := make([]any, len(args))
	for i, a := range args {
		as[i] = a
	}
	return p.Sprintf(id, as...), true
}

// EventKind is an event kind's name in the printer's language, and
// whether the catalog has one (else the caller shows the kind itself).
func (p *Printer) EventKind(kind string) (string, bool) {
	m, ok := p.cat.Lookup(ID("event.kind." + kind))
	if !ok {
		return "", false
	}
	return m.Text(p.lang), true
}

// DetailPart is one message of a detail that lists several
// (mamoriv1.DetailPart, ControlStatus.detail_parts).
type DetailPart interface {
	GetId() string
	GetArgs() []string
}

// StatusDetail is a control's detail in p's language: message id with
// args when it is a "detail.*" message this catalog knows with that many
// arguments, else english (the agent's own text: older agents, newer IDs,
// a mismatch). A detail listing several problems (parts) shows each in
// this language when every one is known, else their English list, which
// is its last argument. The result is agent text: escape it.
func StatusDetail[P DetailPart](p *Printer, english, id string, args []string, parts []P) string {
	if id == "" {
		return english
	}
	if len(parts) > 0 && len(args) > 0 {
		if list, ok := detailList(p, parts); ok {
			args = append(slices.Clone(args[:len(args)-1]), list)
		}
	}
	if t, ok := p.Detail(ID(id), args); ok {
		return t
	}
	return english
}

func detailList[P DetailPart](p *Printer, parts []P) (string, bool) {
	texts := make([]string, len(parts))
	for i, pt := range parts {
		t, ok := p.Detail(ID(pt.GetId()), pt.GetArgs())
		if !ok {
			return "", false
		}
		texts[i] = t
	}
	return strings.Join(texts, p.Sprintf("console.detail.sep")), true
}
