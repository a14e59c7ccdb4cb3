package control

import (
	"strconv"
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/wire"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Detail is one sentence of a control's detail: a "detail.*" message of the
// shared catalogue (internal/i18n, messages_detail.go) and its arguments as
// text. The console shows it in the reader's language.
type Detail struct {
	ID   i18n.ID
	Args []string
	// Parts, when set, are the problems the last argument lists in
	// English, each as its own message (ControlStatus.detail_parts).
	Parts []Detail
}

// D is a Detail.
func D(id i18n.ID, args ...string) Detail { return Detail{ID: id, Args: args} }

var english = i18n.NewPrinter(i18n.English)

// English is the sentence in English, as logs and older servers read it.
func (d Detail) English() string {
	if d.ID == "" {
		return ""
	}
	as := make([]any, len(d.Args))
	for i, a := range d.Args {
		as[i] = a
	}
	return english.Sprintf(d.ID, as...)
}

// SetDetail sets st's detail: the message id with args, and Detail, the
// English text. An argument that is an error's text stays English.
func SetDetail(st *mamoriv1.ControlStatus, id i18n.ID, args ...string) {
	D(id, args...).Apply(st)
}

// Apply sets st's detail to d.
func (d Detail) Apply(st *mamoriv1.ControlStatus) {
	st.DetailId, st.DetailArgs, st.Detail = string(d.ID), d.Args, d.English()
	st.DetailParts = nil
	for _, p := range d.Parts {
		st.DetailParts = append(st.DetailParts, &mamoriv1.DetailPart{Id: string(p.ID), Args: p.Args})
	}
}

// WithParts is d listing ds: d's last argument holds their English
// sentences, and ds travel as messages too, so the console can show each
// in the reader's language.
// More than wire.MaxDetailParts stay English only.
func (d Detail) WithParts(ds []Detail) Detail {
	if len(ds) <= wire.MaxDetailParts {
		d.Parts = ds
	}
	return d
}

// Join is the detail of several problems: the one problem's own detail, or
// "detail.problems" with the count and the English sentences joined by
// "; ", each problem also as its own message (Parts). Join of nothing is
// the zero Detail.
func Join(ds []Detail) Detail {
	switch len(ds) {
	case 0:
		return Detail{}
	case 1:
		return ds[0]
	}
	return D("detail.problems", strconv.Itoa(len(ds)), JoinEnglish(ds)).WithParts(ds)
}

// JoinEnglish is the English sentences of ds joined by "; ".
func JoinEnglish(ds []Detail) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.English()
	}
	return strings.Join(parts, "; ")
}
