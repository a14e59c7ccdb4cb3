package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// The policy pages: the policy in force per device group, its
// history with diffs, and the officer's editors: the form (policyform.go)
// or the whole document as JSON, then the diff against the current
// version, confirm with a reason. No JavaScript: the confirm step is a
// second form carrying the edited document.

const (
	policyHistoryLimit = 20
	maxPolicyJSON      = 48 << 10 // under the form limit
)

// IsOfficer: officers and admins change policy and exceptions.
func (o *operator) IsOfficer() bool { return o != nil && o.Role.Allows(auth.RoleOfficer) }

type policyControlRow struct {
	Name, Mode string
	Required   bool
	Settings   []kv
}

type groupView struct {
	Name           string
	Controls       []policyControlRow
	ReportInterval string
	MaxReportAge   string
}

type versionView struct {
	Version int64
	At      string
	Actor   string
	Reason  string
	Diff    []diffLine
}

type policyView struct {
	Version        int64
	Controls       []policyControlRow
	ReportInterval string
	MaxReportAge   string
	Groups         []groupView
	History        []versionView
}

func controlRows(m map[string]*mamoriv1.ControlPolicy) []policyControlRow {
	var out []policyControlRow
	for name, c := range m {
		out = append(out, policyControlRow{Name: name, Mode: strings.ToLower(strings.TrimPrefix(c.GetMode().String(), "MODE_")),
			Required: c.GetRequired(), Settings: sortedKV(c.GetSettings())})
	}
	slices.SortFunc(out, func(a, b policyControlRow) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// policyJSON is the document as an officer edits it: protojson, indented
// by encoding/json so that the same policy always reads alike.
func policyJSON(p *mamoriv1.Policy) string {
	c := policy.Clone(p)
	c.Version = 0
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c)
	if err != nil {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}

func (c *Console) operatorName(r *http.Request, id string, cache map[string]string) string {
	if n, ok := cache[id]; ok {
		return n
	}
	n := id
	if o, err := c.st.GetOperator(r.Context(), id); err == nil {
		n = o.Name
	}
	cache[id] = n
	return n
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	pol, err := c.st.CurrentPolicy(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.internal(w, r, op, err)
		return
	}
	if pol == nil {
		pol = policy.Default()
	}
	hist, err := c.st.PolicyHistory(ctx, policyHistoryLimit+1)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v := policyView{Version: pol.Version, Controls: controlRows(pol.Controls),
		ReportInterval: policy.ReportInterval(pol).String(), MaxReportAge: policy.MaxReportAge(pol).String()}
	names := make([]string, 0, len(pol.Groups))
	for g := range pol.Groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		gp := pol.Groups[g]
		gv := groupView{Name: g, Controls: controlRows(gp.GetControls())}
		if gp.GetReportInterval() != nil {
			gv.ReportInterval = gp.GetReportInterval().AsDuration().String()
		}
		if gp.GetMaxReportAge() != nil {
			gv.MaxReportAge = gp.GetMaxReportAge().AsDuration().String()
		}
		v.Groups = append(v.Groups, gv)
	}
	names2 := map[string]string{}
	for i, h := range hist {
		if i == policyHistoryLimit {
			break
		}
		vv := versionView{Version: h.Policy.GetVersion(), At: c.formatTime(h.At), Actor: c.operatorName(r, h.Actor, names2), Reason: h.Reason}
		prev := ""
		if i+1 < len(hist) {
			prev = policyJSON(hist[i+1].Policy)
		}
		vv.Diff = withContext(lineDiff(prev, policyJSON(h.Policy)))
		v.History = append(v.History, vv)
	}
	c.render(w, r, http.StatusOK, "policy", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}

type policyEditView struct {
	Version int64
	JSON    string
	Reason  string
	Diff    []diffLine
	// Back is the editor the confirm page leads back to.
	Back string
}

// currentPolicy is the policy in force, or the default (as version 0)
// before anyone set one.
func (c *Console) currentPolicy(r *http.Request) (*mamoriv1.Policy, error) {
	cur, err := c.st.CurrentPolicy(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		cur, err = policy.Default(), nil
		cur.Version = 0
	}
	return cur, err
}

// policyEdit is the advanced editor: the whole document in a text area
// (officer), for what the form (policyform.go) does not cover.
func (c *Console) policyEdit(w http.ResponseWriter, r *http.Request, op *operator) {
	pol, err := c.currentPolicy(r)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	c.render(w, r, http.StatusOK, "policy_edit", view{Op: op, CSRF: op.csrf(),
		Data: policyEditView{Version: pol.Version, JSON: policyJSON(pol)}})
}

// readPolicyChange is the one path every policy change takes, from the
// JSON editor and from the form alike: the reason and the version the
// officer edited are read from the request, build makes the new document
// from cur, and the result must pass policy.ValidateDocument and differ
// from cur. Problems are for the officer; nothing is stored here.
func (c *Console) readPolicyChange(r *http.Request, cur *mamoriv1.Policy, build func(cur *mamoriv1.Policy) (*mamoriv1.Policy, []string)) (edited *mamoriv1.Policy, v policyEditView, problems []string) {
	p := i18n.NewPrinter(lang(r))
	v.Reason = strings.TrimSpace(r.PostForm.Get("reason"))
	v.Version, _ = strconv.ParseInt(r.PostForm.Get("expected"), 10, 64)
	if v.Version != cur.Version {
		return nil, v, []string{p.Sprintf("console.policy.err-conflict", v.Version, cur.Version)}
	}
	edited, problems = build(cur)
	if v.Reason == "" || len(v.Reason) > admin.MaxReasonLength || !utf8.ValidString(v.Reason) {
		problems = append(problems, p.Sprintf("console.err.reason"))
	}
	if len(problems) > 0 {
		return nil, v, problems
	}
	if err := policy.ValidateDocument(edited); err != nil {
		return nil, v, []string{p.Sprintf("console.policy.err-invalid", err.Error())}
	}
	v.Diff = lineDiff(policyJSON(cur), policyJSON(edited))
	if !changed(v.Diff) {
		return nil, v, []string{p.Sprintf("console.policy.err-unchanged")}
	}
	v.Diff = withContext(v.Diff)
	return edited, v, nil
}

// readPolicyForm reads the JSON editor's form (and the confirm form,
// which carries the document as JSON) through readPolicyChange; problem
// is shown to the officer, err is a server failure.
func (c *Console) readPolicyForm(r *http.Request) (edited *mamoriv1.Policy, v policyEditView, problem string, err error) {
	p := i18n.NewPrinter(lang(r))
	text := r.PostForm.Get("policy")
	cur, err := c.currentPolicy(r)
	if err != nil {
		return nil, v, "", err
	}
	edited, v, problems := c.readPolicyChange(r, cur, func(*mamoriv1.Policy) (*mamoriv1.Policy, []string) {
		if len(text) > maxPolicyJSON || !utf8.ValidString(text) {
			return nil, []string{p.Sprintf("console.policy.err-size", maxPolicyJSON)}
		}
		doc := &mamoriv1.Policy{}
		if err := protojson.Unmarshal([]byte(text), doc); err != nil {
			return nil, []string{p.Sprintf("console.policy.err-json", err.Error())}
		}
		return doc, nil
	})
	v.JSON, v.Back = text, "/policy/json"
	return edited, v, strings.Join(problems, " "), nil
}

// policyPreview is step one of saving: the diff against the current
// version, and a confirm form carrying the same document (officer).
func (c *Console) policyPreview(w http.ResponseWriter, r *http.Request, op *operator) {
	_, v, problem, err := c.readPolicyForm(r)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if problem != "" {
		c.render(w, r, http.StatusBadRequest, "policy_edit", view{Op: op, CSRF: op.csrf(), Error: problem, Data: v})
		return
	}
	c.render(w, r, http.StatusOK, "policy_confirm", view{Op: op, CSRF: op.csrf(), Data: v})
}

// policySave stores the confirmed document as a new version (officer).
func (c *Console) policySave(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	edited, v, problem, err := c.readPolicyForm(r)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if problem != "" {
		c.render(w, r, http.StatusBadRequest, "policy_edit", view{Op: op, CSRF: op.csrf(), Error: problem, Data: v})
		return
	}
	saved, err := c.admin.SetPolicy(ctx, op.admin(), edited, v.Version, v.Reason)
	if status, msg, ok := refusal(i18n.NewPrinter(lang(r)), err, v.Version, v.Version+1); ok {
		c.render(w, r, status, "policy_edit", view{Op: op, CSRF: op.csrf(), Error: msg, Data: v})
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/policy#v%d", saved.Version), http.StatusSeeOther)
}

// controlTable is the data of the "policy-controls" template.
func controlTable(p *i18n.Printer, rows []policyControlRow, id string) any {
	return struct {
		P    *i18n.Printer
		Rows []policyControlRow
		ID   string
	}{p, rows, id}
}
