package web

// The device list (端末一覧, issue #19): every terminal, filtered by
// state, 所属, failing control, OS and agent version, sorted, a page at a
// time, and exported as CSV. Each filter is a query parameter, so every
// count on the fleet page is a link to its list.

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

const (
	devicePageSize = 50
	csvPageSize    = 1000
	// noGroup is the group filter's value for devices in no 所属.
	noGroup = "-"
)

// stateValues are the state filter's values, in the order the fleet page
// shows its counts.
var stateValues = []mamoriv1.Compliance{
	mamoriv1.Compliance_COMPLIANCE_COMPLIANT, mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT,
	mamoriv1.Compliance_COMPLIANCE_OFFLINE, mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED,
	mamoriv1.Compliance_COMPLIANCE_REVOKED,
}

var sortValues = []store.DeviceSort{store.SortHostname, store.SortGroup, store.SortLastSeen, store.SortFailingSince}

// deviceListQuery is the list's query string, checked.
type deviceListQuery struct {
	State, Group, Control, OS, Agent, Sort string
	Desc                                   bool
	// Page is the page's number, shown; After and Before (device IDs)
	// say where it is (keyset: the pager's links carry them). A page
	// number without either is read by offset (an old link).
	Page          int
	After, Before string
}

// parseDeviceList reads the query; ok is false for anything the form
// cannot produce (unknown state or order, a bad page, oversized text).
func parseDeviceList(q url.Values) (deviceListQuery, bool) {
	v := deviceListQuery{State: q.Get("state"), Group: q.Get("group"), Control: q.Get("control"),
		OS: q.Get("os"), Agent: q.Get("agent"), Sort: q.Get("sort"), Desc: q.Get("desc") == "1", Page: 1,
		After: q.Get("after"), Before: q.Get("before")}
	if v.After != "" && v.Before != "" {
		return v, false
	}
	for _, s := range []string{v.State, v.Group, v.Control, v.OS, v.Agent, v.Sort, v.After, v.Before} {
		if len(s) > maxSearchLength || !utf8.ValidString(s) {
			return v, false
		}
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			return v, false
		}
		v.Page = n
	}
	if v.State != "" {
		if _, ok := stateOf(v.State); !ok {
			return v, false
		}
	}
	if v.Sort == "" {
		v.Sort = string(store.SortHostname)
	}
	known := false
	for _, s := range sortValues {
		known = known || string(s) == v.Sort
	}
	if d := q.Get("desc"); d != "" && d != "1" && d != "0" {
		return v, false
	}
	return v, known
}

func stateOf(class string) (mamoriv1.Compliance, bool) {
	for _, s := range stateValues {
		if complianceClass(s) == class {
			return s, true
		}
	}
	return 0, false
}

// Encode is the query string of v with the changes given (key, value pairs).
func (v deviceListQuery) Encode(kv ...string) string {
	q := url.Values{}
	set := func(k, s string) {
		if s != "" {
			q.Set(k, s)
		}
	}
	set("state", v.State)
	set("group", v.Group)
	set("control", v.Control)
	set("os", v.OS)
	set("agent", v.Agent)
	if v.Sort != string(store.SortHostname) {
		set("sort", v.Sort)
	}
	if v.Desc {
		q.Set("desc", "1")
	}
	if v.Page > 1 {
		q.Set("page", strconv.Itoa(v.Page))
	}
	set("after", v.After)
	set("before", v.Before)
	for i := 0; i+1 < len(kv); i += 2 {
		q.Del(kv[i])
		set(kv[i], kv[i+1])
	}
	return q.Encode()
}

func (c *Console) storeQuery(v deviceListQuery, cut store.OfflineCut) store.DeviceQuery {
	q := store.DeviceQuery{Filter: cut.Filter(store.DeviceFilter{}), Control: v.Control, OS: v.OS, AgentVersion: v.Agent,
		Sort: store.DeviceSort(v.Sort), Desc: v.Desc}
	if s, ok := stateOf(v.State); ok {
		q.Filter.Compliance = s
	}
	switch v.Group {
	case "":
	case noGroup:
		q.NoGroup = true
	default:
		q.Filter.Group = v.Group
	}
	return q
}

type listRow struct {
	deviceRow
	Group, OS, Agent string
	// Since: failing since (non-compliant) or last seen (offline).
	Since time.Time
	// Reason in one line.
	Reason string
}

type option struct {
	Value, Name string
	Selected    bool
}

type devicesView struct {
	Q                               deviceListQuery
	Rows                            []listRow
	Total                           int64
	From, To                        int64
	Prev, Next                      string
	States, Groups, Controls, OSes  []option
	Agents, Sorts                   []option
	SortDescLink, CSV, ClearFilters string
}

func (c *Console) listRow(p *i18n.Printer, d store.Device, pol *mamoriv1.Policy, now time.Time) listRow {
	r := listRow{deviceRow: c.row(p, d, pol, now), Group: d.Group, OS: d.Facts.GetOs(), Agent: d.Facts.GetAgentVersion()}
	switch r.State {
	case mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT:
		r.Since = r.FailingSince
		r.Reason = strings.Join(r.Reasons, " / ")
	case mamoriv1.Compliance_COMPLIANCE_OFFLINE:
		r.Since = d.LastSeen
		r.Reason = p.Sprintf("console.list.offline-reason", c.formatDuration(p, now.Sub(d.LastSeen)))
	}
	return r
}

func (c *Console) devices(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	v, ok := parseDeviceList(r.URL.Query())
	if !ok {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.bad-form")
		return
	}
	pol, err := c.st.CurrentPolicy(ctx)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	now := c.now()
	cut := compliance.OfflineCut(pol, now)
	if r.URL.Query().Get("format") == "csv" {
		c.devicesCSV(w, r, op, p, v, pol, cut)
		return
	}
	q := c.storeQuery(v, cut)
	q.Limit, q.After, q.Before = devicePageSize, v.After, v.Before
	if v.After == "" && v.Before == "" {
		q.Offset = (v.Page - 1) * devicePageSize
	}
	devs, total, err := c.st.ListDevicePage(ctx, q)
	if errors.Is(err, store.ErrNotFound) {
		// The cursor's device is gone: the first page.
		v.Page, v.After, v.Before = 1, "", ""
		q.After, q.Before, q.Offset = "", "", 0
		devs, total, err = c.st.ListDevicePage(ctx, q)
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	facets, err := c.st.DeviceFacets(ctx)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	dv := devicesView{Q: v, Total: total}
	for _, d := range devs {
		dv.Rows = append(dv.Rows, c.listRow(p, d, pol, now))
	}
	first := int64(v.Page-1) * devicePageSize
	if len(devs) > 0 {
		dv.From, dv.To = first+1, first+int64(len(devs))
	}
	// The pager pages by keyset from this page's first and last device.
	switch {
	case v.Page == 2 || v.Page > 1 && len(devs) == 0:
		dv.Prev = v.Encode("page", "", "after", "", "before", "")
	case v.Page > 2:
		dv.Prev = v.Encode("page", strconv.Itoa(v.Page-1), "after", "", "before", devs[0].ID)
	}
	if len(devs) == devicePageSize && dv.To < total {
		dv.Next = v.Encode("page", strconv.Itoa(v.Page+1), "before", "", "after", devs[len(devs)-1].ID)
	}
	dv.States = []option{{Value: "", Name: p.Sprintf("console.list.any"), Selected: v.State == ""}}
	for _, s := range stateValues {
		dv.States = append(dv.States, option{Value: complianceClass(s), Name: complianceName(p, s), Selected: complianceClass(s) == v.State})
	}
	opts := func(vals []string, cur string, name func(string) string) []option {
		out := []option{{Value: "", Name: p.Sprintf("console.list.any"), Selected: cur == ""}}
		for _, x := range vals {
			out = append(out, option{Value: x, Name: name(x), Selected: x == cur})
		}
		return out
	}
	same := func(s string) string { return visible(s) }
	dv.Groups = opts(append([]string{noGroup}, facets.Groups...), v.Group, func(g string) string {
		if g == noGroup {
			return p.Sprintf("console.group.none")
		}
		return visible(g)
	})
	dv.Controls = opts(facets.Controls, v.Control, func(x string) string { return controlName(p, x) })
	dv.OSes = opts(facets.OSes, v.OS, same)
	dv.Agents = opts(facets.AgentVersions, v.Agent, same)
	for _, s := range sortValues {
		dv.Sorts = append(dv.Sorts, option{Value: string(s), Name: p.Sprintf(i18n.ID("console.list.sort." + string(s))), Selected: string(s) == v.Sort})
	}
	dv.CSV = v.Encode("page", "", "after", "", "before", "", "format", "csv")
	c.render(w, r, http.StatusOK, "devices", view{P: p, Op: op, CSRF: op.csrf(), Data: dv})
}

// devicesCSV streams every device the filters select (UTF-8 with a BOM,
// CRLF, formula-safe cells), a page of the store at a time, and audits the
// export.
func (c *Console) devicesCSV(w http.ResponseWriter, r *http.Request, op *operator, p *i18n.Printer, v deviceListQuery, pol *mamoriv1.Policy, cut store.OfflineCut) {
	ctx := r.Context()
	if err := c.audit(ctx, op.ID, "devices.export", "csv", v.Encode()); err != nil {
		c.internal(w, r, op, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="mamori-devices-%s.csv"`, c.now().In(c.cfg.Location).Format("20060102-1504")))
	io.WriteString(w, csvBOM)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	_ = cw.Write([]string{p.Sprintf("console.col.hostname"), p.Sprintf("console.col.device-id"), p.Sprintf("console.col.group"),
		p.Sprintf("console.col.state"), p.Sprintf("console.col.reasons"), p.Sprintf("console.col.since"),
		p.Sprintf("console.col.last-seen"), "OS", p.Sprintf("console.col.agent")})
	q := c.storeQuery(v, cut)
	q.Limit = csvPageSize
	now := c.now()
	// By keyset: each page costs the same, however deep.
	for {
		devs, _, err := c.st.ListDevicePage(ctx, q)
		if err != nil {
			c.log.ErrorContext(ctx, "device list CSV", "error", err)
			_ = cw.Write([]string{p.Sprintf("console.err.internal")})
			break
		}
		for _, d := range devs {
			lr := c.listRow(p, d, pol, now)
			_ = cw.Write([]string{safeCell(lr.Hostname), d.ID, safeCell(d.Group), lr.StateName, safeCell(strings.Join(lr.Reasons, " / ")),
				csvTime(lr.Since, c.cfg.Location), csvTime(d.LastSeen, c.cfg.Location), safeCell(lr.OS), safeCell(lr.Agent)})
		}
		cw.Flush()
		if len(devs) < csvPageSize || cw.Error() != nil || ctx.Err() != nil {
			break
		}
		q.After = devs[len(devs)-1].ID
	}
	cw.Flush()
}

func csvTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(time.RFC3339)
}

// controlName is a control's name in the reader's language, the
// identifier when the catalogue has none.
func controlName(p *i18n.Printer, control string) string {
	if s, ok := p.Lookup(i18n.ID("console.control." + control)); ok {
		return s
	}
	return control
}
