package web

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

const (
	fleetListLimit  = 200
	searchLimit     = 100
	recentEvents    = 50
	historyLimit    = 50
	maxSearchLength = 255
)

// deviceRow is one device in a list.
type deviceRow struct {
	ID, Hostname string
	State        mamoriv1.Compliance
	StateName    string
	Reasons      []string
	FailingSince time.Time
	LastSeen     time.Time
}

func (c *Console) row(p *i18n.Printer, d store.Device, pol *mamoriv1.Policy, now time.Time) deviceRow {
	st, _ := compliance.State(d, pol, now)
	r := deviceRow{ID: d.ID, Hostname: visible(d.Facts.GetHostname()), State: st, StateName: complianceName(p, st),
		Reasons: localReasons(p, d.Reasons, d.Controls), LastSeen: d.LastSeen}
	if d.Verdict == store.VerdictNoncompliant {
		r.FailingSince = d.FailingSince
	}
	return r
}

func complianceName(p *i18n.Printer, s mamoriv1.Compliance) string {
	return p.Sprintf(i18n.ID("console.state." + complianceClass(s)))
}

type fleetView struct {
	Counts        []countView
	Total         int64
	PolicyVersion int64
	Noncompliant  []deviceRow
	More          bool
	Extra         *fleetExtra // chart.go
}

type countView struct {
	Class, Name string
	N           int64
}

func (c *Console) fleet(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	pol, err := c.st.CurrentPolicy(ctx)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	now := c.now()
	n, err := c.st.CountFleet(ctx, compliance.OfflineCut(pol, now))
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	devs, err := c.st.ListDevices(ctx, compliance.OfflineCut(pol, now).Filter(store.DeviceFilter{
		Compliance: mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, Limit: fleetListLimit + 1,
	}))
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v := fleetView{Total: n.Total, PolicyVersion: pol.Version}
	// By control, by group, the 90-day chart (chart.go).
	if v.Extra, err = c.fleetExtra(ctx, p, pol, now); err != nil {
		c.internal(w, r, op, err)
		return
	}
	for _, x := range []struct {
		s mamoriv1.Compliance
		n int64
	}{
		{mamoriv1.Compliance_COMPLIANCE_COMPLIANT, n.Compliant},
		{mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, n.Noncompliant},
		{mamoriv1.Compliance_COMPLIANCE_OFFLINE, n.Offline},
		{mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, n.NeverReported},
		{mamoriv1.Compliance_COMPLIANCE_REVOKED, n.Revoked},
	} {
		v.Counts = append(v.Counts, countView{Class: complianceClass(x.s), Name: complianceName(p, x.s), N: x.n})
	}
	if len(devs) > fleetListLimit {
		devs, v.More = devs[:fleetListLimit], true
	}
	for _, d := range devs {
		v.Noncompliant = append(v.Noncompliant, c.row(p, d, pol, now))
	}
	// Longest failing first: that is what needs a person.
	sort.SliceStable(v.Noncompliant, func(i, j int) bool { return v.Noncompliant[i].FailingSince.Before(v.Noncompliant[j].FailingSince) })
	c.render(w, r, http.StatusOK, "fleet", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}

type searchView struct {
	Q        string
	Results  []deviceRow
	Searched bool
	// Wider search (searchx.go): the kind searched and its hits.
	Kind  string
	Kinds []kindOpt
	Hits  []termRow
}

func (c *Console) search(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v := searchView{Q: q, Kind: r.URL.Query().Get("kind")}
	if v.Kind == "" {
		v.Kind = "hostname"
	}
	var validKind bool
	v.Kinds, validKind = kindOpts(p, v.Kind)
	if !validKind || len(q) > maxSearchLength || !utf8.ValidString(q) {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.bad-form")
		return
	}
	if v.Kind != "hostname" {
		c.searchTerms(w, r, op, v)
		return
	}
	if q != "" {
		pol, err := c.st.CurrentPolicy(ctx)
		if err != nil {
			c.internal(w, r, op, err)
			return
		}
		devs, err := c.st.SearchDevices(ctx, q, searchLimit)
		if err != nil {
			c.internal(w, r, op, err)
			return
		}
		now := c.now()
		for _, d := range devs {
			v.Results = append(v.Results, c.row(p, d, pol, now))
		}
		v.Searched = true
	}
	c.render(w, r, http.StatusOK, "search", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}

type controlView struct {
	Name, Mode, Detail string
	State              mamoriv1.ControlState
	StateName          string
	Since, ObservedAt  time.Time
	Evidence           []kv
}

type kv struct{ K, V string }

type eventView struct {
	Time, Received time.Time
	Control, Kind  string
	// KindName is Kind in the reader's language; "" for a kind the
	// catalogue does not name.
	KindName   string
	Attributes []kv
}

func eventViewOf(p *i18n.Printer, e store.StoredEvent) eventView {
	name, _ := p.EventKind(e.Event.GetKind())
	return eventView{Time: e.Event.GetTime().AsTime(), Received: e.ReceivedAt,
		Control: e.Event.GetControl(), Kind: e.Event.GetKind(), KindName: name, Attributes: sortedKV(e.Event.GetAttributes())}
}

type historyView struct {
	At       time.Time
	Control  string
	From, To string
	Detail   string
}

type deviceView struct {
	Row      deviceRow
	Device   store.Device
	Facts    *mamoriv1.DeviceFacts
	Controls []controlView
	Events   []eventView
	History  []historyView
	Revoked  bool
	// Exceptions of the device and their uses (exceptions.go).
	Exceptions *deviceExceptions
	// MFAUsers: whose login factors the device receives, or why none
	// (server/mfa.Access; issue #14).
	MFAUsers string
}

// mfaUsers says whose factors a device with this effective policy
// receives, or why it receives none.
func mfaUsers(p *i18n.Printer, pol *mamoriv1.Policy, attested bool) string {
	a := mfa.AccessOf(pol)
	if why := a.Refusal(attested); why != "" {
		return p.Sprintf(i18n.ID("ctl.mfa.access.refused." + why))
	}
	if a.All {
		return p.Sprintf("ctl.mfa.access.all")
	}
	return strings.Join(a.Users, ", ")
}

func sortedKV(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

func stateName(p *i18n.Printer, s mamoriv1.ControlState) string {
	return p.Sprintf(i18n.ID("console.cstate." + strings.ToLower(compliance.StateName(s))))
}

func (c *Console) device(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	d, err := c.st.GetDevice(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, op, "console.err.no-device")
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	pol, err := c.st.CurrentPolicy(ctx)
	if err == nil {
		pol, err = c.effectiveFor(ctx, d, pol) // its group's max report age
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	evs, err := c.st.ListEvents(ctx, store.EventFilter{DeviceID: d.ID, Limit: recentEvents})
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	hist, err := c.st.ControlHistory(ctx, d.ID, historyLimit)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v := deviceView{Row: c.row(p, d, pol, c.now()), Device: d, Facts: d.Facts, Revoked: !d.RevokedAt.IsZero(),
		MFAUsers: mfaUsers(p, pol, d.KeyAttested)}
	for _, cr := range d.Controls {
		s := cr.GetStatus()
		v.Controls = append(v.Controls, controlView{
			Name: s.GetControl(), Mode: strings.ToLower(strings.TrimPrefix(s.GetMode().String(), "MODE_")), Detail: controlDetail(p, s),
			State: s.GetState(), StateName: stateName(p, s.GetState()),
			Since: cr.GetSince().AsTime(), ObservedAt: s.GetObservedAt().AsTime(), Evidence: sortedKV(s.GetEvidence()),
		})
	}
	sort.Slice(v.Controls, func(i, j int) bool { return v.Controls[i].Name < v.Controls[j].Name })
	for _, e := range evs {
		v.Events = append(v.Events, eventViewOf(p, e))
	}
	// A history entry keeps the agent's detail message (DetailMsg) when it
	// sent one: shown in the reader's language like the current detail.
	// Entries from before the store kept it (or too large to keep) show
	// the English detail, except the latest change of a control whose
	// detail is still the current one, shown like the current one.
	current := make(map[string]*mamoriv1.ControlStatus, len(d.Controls))
	for _, cr := range d.Controls {
		current[cr.GetStatus().GetControl()] = cr.GetStatus()
	}
	for _, h := range hist {
		detail := h.Detail
		switch s := current[h.Control]; {
		case h.DetailMsg != nil:
			m := h.DetailMsg
			detail = i18n.StatusDetail(p, h.Detail, m.GetDetailId(), m.GetDetailArgs(), m.GetDetailParts())
		case s != nil && s.GetState() == h.To && s.GetDetail() == h.Detail:
			detail = controlDetail(p, s)
		}
		v.History = append(v.History, historyView{At: h.At, Control: h.Control, From: stateName(p, h.From), To: stateName(p, h.To), Detail: detail})
	}
	if v.Exceptions, err = c.deviceExceptions(ctx, p, d, v.Events); err != nil {
		c.internal(w, r, op, err)
		return
	}
	c.render(w, r, http.StatusOK, "device", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}

// approveReenrollment confirms a possible clone as the re-enrolled device
// (officer); the route already checked role and CSRF.
func (c *Console) approveReenrollment(w http.ResponseWriter, r *http.Request, op *operator) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	d, _, err := c.admin.ApproveReenrollment(r.Context(), op.admin(), r.PathValue("id"), reason)
	if c.refused(w, r, op, err) {
		return
	}
	http.Redirect(w, r, "/devices/"+d.ID, http.StatusSeeOther)
}

// revoke is the officer's action; the route already checked role and CSRF.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, op *operator) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	d, err := c.admin.RevokeDevice(r.Context(), op.admin(), r.PathValue("id"), reason)
	if c.refused(w, r, op, err) {
		return
	}
	http.Redirect(w, r, "/devices/"+d.ID, http.StatusSeeOther)
}
