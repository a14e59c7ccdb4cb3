package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
)

// The policy form: an officer edits one scope — the base policy
// or one device group's override — through fields instead of JSON: each
// control's mode and whether it is required, the media control's action
// per device class and its allow-list, the login-mfa methods, grace period
// and PAM services, and the two durations. The form is applied to the
// current document server-side (only what the form covers changes) and
// the result takes the JSON editor's path: diff, confirm, save. What the
// form does not cover (isolation and agent settings, the MFA users, the
// PAM module hashes) is edited on the advanced page (/policy/json).

const (
	maxFormField  = 256  // a mode, a duration, a date, one allow-list field
	maxFormList   = 2048 // the PAM services
	formBlankRows = 3    // empty allow-list rows under the filled ones
	maxAllowRows  = policy.MaxAllowEntries + 64
)

// Modes a scope can choose beside the Mode enum's: a group control that
// is not overridden inherits the base's; a base control that is absent is
// off (agents report it NOT_APPLICABLE, media and isolation change
// nothing).
const (
	modeInherit = "inherit"
	modeOff     = "off"
)

var (
	modeMonitor = mamoriv1.Mode_MODE_MONITOR.String()
	modeEnforce = mamoriv1.Mode_MODE_ENFORCE.String()
	// formControls are listed first, in this order; other controls the
	// policy names follow alphabetically.
	formControls = []string{policy.ControlAgent, policy.ControlMedia, policy.ControlLoginMFA, policy.ControlIsolation}
	mfaMethods   = []string{policy.MFAMethodTOTP, policy.MFAMethodTPMPIN}
)

type formControl struct {
	Name     string
	Mode     string // modeInherit, modeOff, MODE_MONITOR, MODE_ENFORCE
	Required bool
	// Base is the base policy's mode of this control (group scope),
	// modeOff when the base does not name it.
	Base         string
	BaseRequired bool
}

type mediaField struct {
	Setting, Value string
	Actions        []string
}

type allowRow struct{ Vendor, Product, Serial string }

type methodField struct {
	Name string
	On   bool
}

type policyFormView struct {
	Version  int64
	Group    string // "" for the base policy
	NewGroup bool   // the group has no override yet
	Scopes   []string
	Modes    []string
	Controls []formControl
	Media    []mediaField
	Allow    []allowRow
	Blank    int // index of the first blank allow-list row
	Methods  []methodField
	// badMethods are submitted method values that are not methods.
	badMethods []string
	Grace      string
	Services   string
	// Durations as Go durations; "" in a group inherits the base's.
	ReportInterval, MaxReportAge         string
	BaseReportInterval, BaseMaxReportAge string
	Reason                               string
	Problems                             []string
}

// IsGroup: the form edits a group's override.
func (v policyFormView) IsGroup() bool { return v.Group != "" }

// formDuration writes d as short as Go parses it back: 1m, 90s, 1h30m.
// durationUnits are the units the form offers, largest first.
var durationUnits = []struct {
	Unit string
	D    time.Duration
}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}

// splitDuration shows a Go duration as a whole number of the largest unit
// that divides it (90s: 90 s; 5m: 5 min); ok is false for "" or text that
// is not a whole number of seconds.
func splitDuration(s string) (n int64, unit string, ok bool) {
	d, err := time.ParseDuration(s)
	if s == "" || err != nil || d <= 0 || d%time.Second != 0 {
		return 0, "", false
	}
	for _, u := range durationUnits {
		if d%u.D == 0 {
			return int64(d / u.D), u.Unit, true
		}
	}
	return 0, "", false
}

// joinDuration makes the form's number and unit a Go duration; "" for an
// empty number (inherit); anything else malformed is passed on as typed,
// so parseFormDuration refuses it with the field named.
func joinDuration(n, unit string) string {
	n = strings.TrimSpace(n)
	if n == "" {
		return ""
	}
	if len(n) > 9 || strings.TrimLeft(n, "0123456789") != "" {
		return n
	}
	switch unit {
	case "s", "m", "h":
		return n + unit
	}
	return n + "?"
}

func formDuration(d time.Duration) string { return incident.DurationText(d) }

func modeOf(c *mamoriv1.ControlPolicy) string { return c.GetMode().String() }

// controlNames: the controls the form lists for a scope.
func controlNames(cur *mamoriv1.Policy, group string) []string {
	var extra []string
	add := func(m map[string]*mamoriv1.ControlPolicy) {
		for n := range m {
			if !slices.Contains(formControls, n) && !slices.Contains(extra, n) {
				extra = append(extra, n)
			}
		}
	}
	add(cur.GetControls())
	if group != "" {
		add(cur.GetGroups()[group].GetControls())
	}
	slices.Sort(extra)
	return append(slices.Clone(formControls), extra...)
}

// settingsSource is the control whose settings the form shows for a
// scope: the scope's own, else (a group) the base's, which an override
// starts from.
func settingsSource(cur *mamoriv1.Policy, group, name string) *mamoriv1.ControlPolicy {
	if group != "" {
		if c := cur.GetGroups()[group].GetControls()[name]; c != nil {
			return c
		}
	}
	return cur.GetControls()[name]
}

// policyFormFrom is the form as the current policy fills it.
func policyFormFrom(cur *mamoriv1.Policy, group string) policyFormView {
	v := policyFormView{Version: cur.GetVersion(), Group: group,
		BaseReportInterval: formDuration(policy.ReportInterval(cur)), BaseMaxReportAge: formDuration(policy.MaxReportAge(cur))}
	scope := cur.GetControls()
	v.Modes = []string{modeOff, modeMonitor, modeEnforce}
	if group != "" {
		gp, ok := cur.GetGroups()[group]
		v.NewGroup = !ok
		scope = gp.GetControls()
		v.Modes[0] = modeInherit
		if d := gp.GetReportInterval(); d != nil {
			v.ReportInterval = formDuration(d.AsDuration())
		}
		if d := gp.GetMaxReportAge(); d != nil {
			v.MaxReportAge = formDuration(d.AsDuration())
		}
	} else {
		v.ReportInterval, v.MaxReportAge = v.BaseReportInterval, v.BaseMaxReportAge
	}
	for _, name := range controlNames(cur, group) {
		fc := formControl{Name: name, Base: modeOff}
		if b := cur.GetControls()[name]; b != nil {
			fc.Base, fc.BaseRequired = modeOf(b), b.GetRequired()
		}
		switch c := scope[name]; {
		case c != nil:
			fc.Mode, fc.Required = modeOf(c), c.GetRequired()
		case group != "":
			fc.Mode, fc.Required = modeInherit, fc.BaseRequired
		default:
			fc.Mode = modeOff
		}
		v.Controls = append(v.Controls, fc)
	}
	ms := settingsSource(cur, group, policy.ControlMedia).GetSettings()
	for _, mc := range policy.MediaClasses {
		val := strings.TrimSpace(ms[mc.Setting])
		if val == "" {
			val = mc.Default()
		}
		v.Media = append(v.Media, mediaField{Setting: mc.Setting, Value: val, Actions: mc.Actions})
	}
	for _, e := range policy.SplitAllowList(ms[policy.SettingMediaAllow]) {
		v.Allow = append(v.Allow, allowRow(e))
	}
	ls := settingsSource(cur, group, policy.ControlLoginMFA).GetSettings()
	on := splitList(ls[policy.SettingMFAMethods])
	if len(on) == 0 {
		on = mfaMethods
	}
	for _, m := range mfaMethods {
		v.Methods = append(v.Methods, methodField{Name: m, On: slices.Contains(on, m)})
	}
	v.Grace = strings.TrimSpace(ls[policy.SettingMFAGraceUntil])
	v.Services = strings.TrimSpace(ls[policy.SettingMFAServices])
	return v
}

// splitList splits a comma-separated setting, trimmed, without empties
// and duplicates.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// submitted is v with what the form carries; a field the form does not
// carry keeps its current value.
func (v policyFormView) submitted(f url.Values) (policyFormView, []string) {
	s := v
	var bad []string
	s.Controls = slices.Clone(v.Controls)
	for i := range s.Controls {
		fc := &s.Controls[i]
		if f.Has("mode." + fc.Name) {
			fc.Mode = f.Get("mode." + fc.Name)
			fc.Required = f.Get("required."+fc.Name) != ""
		}
	}
	s.Media = slices.Clone(v.Media)
	for i := range s.Media {
		if k := "media." + s.Media[i].Setting; f.Has(k) {
			s.Media[i].Value = f.Get(k)
		}
	}
	if f.Has("allow.rows") {
		n, err := strconv.Atoi(f.Get("allow.rows"))
		if err != nil || n < 0 || n > maxAllowRows {
			bad = append(bad, "allow.rows")
			n = 0
		}
		s.Allow = nil
		for i := range n {
			k := strconv.Itoa(i)
			r := allowRow{strings.TrimSpace(f.Get("allow.vendor." + k)), strings.TrimSpace(f.Get("allow.product." + k)), strings.TrimSpace(f.Get("allow.serial." + k))}
			if f.Get("allow.remove."+k) != "" || r == (allowRow{}) {
				continue
			}
			s.Allow = append(s.Allow, r)
		}
	}
	if f.Has("mfa.present") {
		s.Methods = nil
		for _, m := range mfaMethods {
			s.Methods = append(s.Methods, methodField{Name: m, On: slices.Contains(f["mfa.method"], m)})
		}
		for _, m := range f["mfa.method"] {
			if !slices.Contains(mfaMethods, m) {
				s.badMethods = append(s.badMethods, m)
			}
		}
		s.Grace = f.Get("mfa.grace_until")
		s.Services = f.Get("mfa.services")
	}
	if f.Has("report_interval") {
		s.ReportInterval = strings.TrimSpace(f.Get("report_interval"))
	}
	if f.Has("max_report_age") {
		s.MaxReportAge = strings.TrimSpace(f.Get("max_report_age"))
	}
	// The form's number and unit (issue #19); the text fields above stay
	// for clients that post Go durations.
	if f.Has("report_interval_n") {
		s.ReportInterval = joinDuration(f.Get("report_interval_n"), f.Get("report_interval_unit"))
	}
	if f.Has("max_report_age_n") {
		s.MaxReportAge = joinDuration(f.Get("max_report_age_n"), f.Get("max_report_age_unit"))
	}
	s.Reason = strings.TrimSpace(f.Get("reason"))
	return s, bad
}

// withBlankRows pads the allow-list with empty rows to fill in.
func (v policyFormView) withBlankRows(n int) policyFormView {
	v.Allow = slices.Clone(v.Allow)
	v.Blank = len(v.Allow)
	for range n {
		v.Allow = append(v.Allow, allowRow{})
	}
	return v
}

// formText is a submitted value as an error message may quote it: short,
// bidi and control characters made visible.
func formText(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return visible(strings.ToValidUTF8(s, "\uFFFD"))
}

// applyPolicyForm builds the document the form asks for: cur with the
// scope's fields as sub has them. A field equal to what the form showed
// (old) is left exactly as stored; every other part of the document is
// kept as it is. Problems are for the officer, in p's language.
func applyPolicyForm(p *i18n.Printer, cur *mamoriv1.Policy, old, sub policyFormView) (*mamoriv1.Policy, []string) {
	ed := policy.Clone(cur)
	var problems []string
	add := func(id i18n.ID, args ...any) { problems = append(problems, p.Sprintf(id, args...)) }
	group := old.Group
	var gp *mamoriv1.GroupPolicy
	var scope map[string]*mamoriv1.ControlPolicy
	wasEmpty := false
	if group == "" {
		if ed.Controls == nil {
			ed.Controls = map[string]*mamoriv1.ControlPolicy{}
		}
		scope = ed.Controls
	} else {
		gp = ed.GetGroups()[group]
		if gp == nil {
			gp = &mamoriv1.GroupPolicy{}
		}
		wasEmpty = len(gp.Controls) == 0 && gp.ReportInterval == nil && gp.MaxReportAge == nil
		if gp.Controls == nil {
			gp.Controls = map[string]*mamoriv1.ControlPolicy{}
		}
		scope = gp.Controls
	}
	for _, fc := range sub.Controls {
		switch {
		case len(fc.Mode) > maxFormField || !slices.Contains(old.Modes, fc.Mode):
			add("console.policyform.err-mode", fc.Name, formText(fc.Mode))
			continue
		case fc.Mode == modeInherit || fc.Mode == modeOff:
			delete(scope, fc.Name)
			continue
		}
		var ctl *mamoriv1.ControlPolicy
		if c := scope[fc.Name]; c != nil {
			ctl = c
		} else if c := cur.GetControls()[fc.Name]; c != nil && group != "" {
			// A new override starts as a copy of the base control, so
			// the settings the form does not show are kept.
			ctl = proto.Clone(c).(*mamoriv1.ControlPolicy)
		} else {
			ctl = &mamoriv1.ControlPolicy{}
		}
		ctl.Mode = mamoriv1.Mode(mamoriv1.Mode_value[fc.Mode])
		ctl.Required = fc.Required
		switch fc.Name {
		case policy.ControlMedia:
			problems = append(problems, applyMedia(p, ctl, old, sub)...)
		case policy.ControlLoginMFA:
			problems = append(problems, applyLoginMFA(p, ctl, old, sub)...)
		}
		scope[fc.Name] = ctl
	}
	problems = append(problems, applyDurations(p, ed, gp, old, sub)...)
	if group != "" {
		empty := len(gp.Controls) == 0 && gp.ReportInterval == nil && gp.MaxReportAge == nil
		switch {
		case empty && !wasEmpty:
			// Everything inherits again: the override is gone.
			delete(ed.Groups, group)
		case !empty:
			if ed.Groups == nil {
				ed.Groups = map[string]*mamoriv1.GroupPolicy{}
			}
			ed.Groups[group] = gp
		}
		if len(ed.Groups) == 0 {
			ed.Groups = nil
		}
	}
	return ed, problems
}

func setSetting(c *mamoriv1.ControlPolicy, k, v string) {
	if v == "" {
		delete(c.Settings, k)
		return
	}
	if c.Settings == nil {
		c.Settings = map[string]string{}
	}
	c.Settings[k] = v
}

func applyMedia(p *i18n.Printer, ctl *mamoriv1.ControlPolicy, old, sub policyFormView) []string {
	var problems []string
	for i, mc := range policy.MediaClasses {
		nv := sub.Media[i].Value
		if len(nv) > maxFormField || !mc.Allows(nv) {
			problems = append(problems, p.Sprintf("console.policyform.err-media-action", p.Sprintf(i18n.ID("console.policyform.class."+mc.Setting)), formText(nv)))
			continue
		}
		if nv != old.Media[i].Value {
			setSetting(ctl, mc.Setting, nv)
		}
	}
	normal := func(rows []allowRow) []string {
		var out []string
		for _, r := range rows {
			if e := policy.AllowEntry(r).Normal().String(); !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
		return out
	}
	if len(sub.Allow) > policy.MaxAllowEntries {
		return append(problems, p.Sprintf("console.policyform.err-allow-count", len(sub.Allow), policy.MaxAllowEntries))
	}
	bad := false
	for i, r := range sub.Allow {
		if !policy.CheckHex4(r.Vendor) || !policy.CheckHex4(r.Product) || !policy.CheckAllowSerial(r.Serial) {
			problems = append(problems, p.Sprintf("console.policyform.err-allow-row", i+1, formText(r.Vendor+":"+r.Product+":"+r.Serial)))
			bad = true
		}
	}
	if now := normal(sub.Allow); !bad && !slices.Equal(now, normal(old.Allow)) {
		setSetting(ctl, policy.SettingMediaAllow, strings.Join(now, ","))
	}
	return problems
}

func applyLoginMFA(p *i18n.Printer, ctl *mamoriv1.ControlPolicy, old, sub policyFormView) []string {
	var problems []string
	for _, m := range sub.badMethods {
		problems = append(problems, p.Sprintf("console.policyform.err-method", formText(m)))
	}
	on := func(ms []methodField) []string {
		var out []string
		for _, m := range ms {
			if m.On {
				out = append(out, m.Name)
			}
		}
		return out
	}
	switch now := on(sub.Methods); {
	case len(now) == 0:
		problems = append(problems, p.Sprintf("console.policyform.err-methods-none"))
	case !slices.Equal(now, on(old.Methods)):
		setSetting(ctl, policy.SettingMFAMethods, strings.Join(now, ","))
	}
	grace := strings.TrimSpace(sub.Grace)
	switch {
	case len(grace) > maxFormField:
		problems = append(problems, p.Sprintf("console.policyform.err-too-long", p.Sprintf("console.policyform.grace"), maxFormField))
	case grace == old.Grace:
	case grace != "" && policy.CheckGraceUntil(grace) != nil:
		problems = append(problems, p.Sprintf("console.policyform.err-grace", formText(grace)))
	default:
		setSetting(ctl, policy.SettingMFAGraceUntil, grace)
	}
	svc := strings.TrimSpace(sub.Services)
	switch {
	case len(svc) > maxFormList:
		problems = append(problems, p.Sprintf("console.policyform.err-too-long", p.Sprintf("console.policyform.services"), maxFormList))
	case svc == old.Services:
	default:
		list := splitList(svc)
		for _, s := range list {
			if !policy.CheckPAMService(s) {
				problems = append(problems, p.Sprintf("console.policyform.err-service", formText(s)))
			}
		}
		if len(list) > policy.MaxMFAServices {
			problems = append(problems, p.Sprintf("console.policyform.err-services-count", len(list), policy.MaxMFAServices))
		}
		setSetting(ctl, policy.SettingMFAServices, strings.Join(list, ","))
	}
	return problems
}

// parseFormDuration reads a Go duration; "" is zero (inherit).
func parseFormDuration(p *i18n.Printer, label i18n.ID, s string) (time.Duration, string) {
	if s == "" {
		return 0, ""
	}
	d, err := time.ParseDuration(s)
	if len(s) > maxFormField || err != nil || d <= 0 {
		return 0, p.Sprintf("console.policyform.err-duration", p.Sprintf(label), formText(s))
	}
	return d, ""
}

func applyDurations(p *i18n.Printer, ed *mamoriv1.Policy, gp *mamoriv1.GroupPolicy, old, sub policyFormView) []string {
	var problems []string
	ri, msg1 := parseFormDuration(p, "console.policy.report-interval", sub.ReportInterval)
	ma, msg2 := parseFormDuration(p, "console.policy.max-report-age", sub.MaxReportAge)
	for _, m := range []string{msg1, msg2} {
		if m != "" {
			problems = append(problems, m)
		}
	}
	if gp == nil && msg1 == "" && msg2 == "" && (ri == 0 || ma == 0) {
		problems = append(problems, p.Sprintf("console.policyform.err-duration-missing"))
	}
	if len(problems) > 0 {
		return problems
	}
	// The effective durations must hold like the base's.
	effRI, effMA := ri, ma
	if effRI == 0 {
		effRI = policy.ReportInterval(ed)
	}
	if effMA == 0 {
		effMA = policy.MaxReportAge(ed)
	}
	if effRI < policy.MinReportInterval || effRI > policy.MaxReportInterval {
		problems = append(problems, p.Sprintf("console.policyform.err-interval-range", formDuration(effRI), formDuration(policy.MinReportInterval), formDuration(policy.MaxReportInterval)))
	}
	if effMA < 2*effRI {
		problems = append(problems, p.Sprintf("console.policyform.err-max-age", formDuration(effMA), formDuration(2*effRI)))
	}
	if len(problems) > 0 {
		return problems
	}
	oldRI, _ := parseFormDuration(p, "", old.ReportInterval)
	oldMA, _ := parseFormDuration(p, "", old.MaxReportAge)
	set := func(dst **durationpb.Duration, d, was time.Duration) {
		switch {
		case d == was:
		case d == 0:
			*dst = nil
		default:
			*dst = durationpb.New(d)
		}
	}
	if gp == nil {
		set(&ed.ReportInterval, ri, oldRI)
		set(&ed.MaxReportAge, ma, oldMA)
	} else {
		set(&gp.ReportInterval, ri, oldRI)
		set(&gp.MaxReportAge, ma, oldMA)
	}
	return problems
}

// groupNameProblem checks a group name from a form or a URL.
func groupNameProblem(p *i18n.Printer, g string) string {
	if err := policy.CheckGroupName(g); err != nil || !utf8.ValidString(g) {
		return p.Sprintf("console.policyform.err-group", policy.MaxGroupNameLength)
	}
	for _, r := range g {
		if isHidden(r) {
			return p.Sprintf("console.policyform.err-group", policy.MaxGroupNameLength)
		}
	}
	return ""
}

// policyScopes are the groups to choose from: those the policy names and
// those devices are in.
func (c *Console) policyScopes(r *http.Request, cur *mamoriv1.Policy, group string) ([]string, error) {
	var out []string
	for g := range cur.GetGroups() {
		out = append(out, g)
	}
	counts, err := c.st.CountFleetByGroup(r.Context(), store.OfflineCut{})
	if err != nil {
		return nil, err
	}
	for _, gc := range counts {
		if gc.Group != "" && policy.CheckGroupName(gc.Group) == nil && !slices.Contains(out, gc.Group) {
			out = append(out, gc.Group)
		}
	}
	if group != "" && !slices.Contains(out, group) {
		out = append(out, group)
	}
	slices.Sort(out)
	return out, nil
}

func (c *Console) renderPolicyForm(w http.ResponseWriter, r *http.Request, op *operator, status int, cur *mamoriv1.Policy, v policyFormView, blank int) {
	scopes, err := c.policyScopes(r, cur, v.Group)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v.Scopes = scopes
	c.render(w, r, status, "policy_form", view{Op: op, CSRF: op.csrf(), Data: v.withBlankRows(blank)})
}

// policyFormPage shows the form for the scope ?group= names (officer).
func (c *Console) policyFormPage(w http.ResponseWriter, r *http.Request, op *operator) {
	cur, err := c.currentPolicy(r)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	p := i18n.NewPrinter(lang(r))
	group, status := r.URL.Query().Get("group"), http.StatusOK
	var problems []string
	if group != "" {
		if msg := groupNameProblem(p, group); msg != "" {
			group, status, problems = "", http.StatusBadRequest, []string{msg}
		}
	}
	fv := policyFormFrom(cur, group)
	fv.Problems = problems
	c.renderPolicyForm(w, r, op, status, cur, fv, formBlankRows)
}

// policyFormSubmit applies the form (officer): "more rows" shows it again
// with more empty allow-list rows; otherwise the change goes the JSON
// editor's way (readPolicyChange) to the confirm page.
func (c *Console) policyFormSubmit(w http.ResponseWriter, r *http.Request, op *operator) {
	cur, err := c.currentPolicy(r)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	p := i18n.NewPrinter(lang(r))
	f := r.PostForm
	group := f.Get("group")
	if group != "" {
		if msg := groupNameProblem(p, group); msg != "" {
			v := policyFormFrom(cur, "")
			v.Problems = []string{msg}
			c.renderPolicyForm(w, r, op, http.StatusBadRequest, cur, v, formBlankRows)
			return
		}
	}
	old := policyFormFrom(cur, group)
	sub, bad := old.submitted(f)
	if f.Has("more-rows") {
		c.renderPolicyForm(w, r, op, http.StatusOK, cur, sub, 2*formBlankRows)
		return
	}
	edited, ev, problems := c.readPolicyChange(r, cur, func(cur *mamoriv1.Policy) (*mamoriv1.Policy, []string) {
		if len(bad) > 0 {
			return nil, []string{p.Sprintf("console.policyform.err-form")}
		}
		return applyPolicyForm(p, cur, old, sub)
	})
	if len(problems) > 0 {
		sub.Problems = problems
		c.renderPolicyForm(w, r, op, http.StatusBadRequest, cur, sub, formBlankRows)
		return
	}
	ev.JSON = policyJSON(edited)
	ev.Back = "/policy/edit"
	if group != "" {
		ev.Back += "?" + url.Values{"group": {group}}.Encode()
	}
	c.render(w, r, http.StatusOK, "policy_confirm", view{Op: op, CSRF: op.csrf(), Data: ev})
}
