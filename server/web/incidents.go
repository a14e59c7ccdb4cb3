package web

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
)

// addEvidencePages parses the pages of this part of the console: fleet
// extras live in fleet.html; these are new pages.
func (c *Console) addEvidencePages(funcs template.FuncMap) error {
	funcs["vis"] = visible
	funcs["ruleName"] = func(p *i18n.Printer, rule string) string { return p.Sprintf(i18n.ID("console.rule." + rule)) }
	// An incident about a caller's address (enroll-token-guessing) has
	// no device page.
	funcs["isSource"] = func(id string) bool { return strings.HasPrefix(id, incident.SourcePrefix) }
	// An incident's summary in the reader's language and the console's
	// zone (stored as a message; older incidents keep their text).
	funcs["incSummary"] = func(p *i18n.Printer, in store.Incident) string {
		return visible(incident.Summary(p, in, c.formatTime, func(d time.Duration) string { return c.formatDuration(p, d) }))
	}
	funcs["incState"] = func(p *i18n.Printer, s string) string { return p.Sprintf(i18n.ID("console.incident.state." + s)) }
	for _, name := range []string{"evidence", "incidents", "incident", "operators", "operator-created"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	t, err := parseReport(funcs)
	if err != nil {
		return err
	}
	c.pages["report"] = t
	return nil
}

// routeEvidence adds this part's routes. Roles: helpdesk reads incidents
// and acknowledges them; officers also close them and export evidence;
// admins manage operators.
func (c *Console) routeEvidence(mux *http.ServeMux) {
	mux.Handle("GET /incidents", c.signedIn(auth.RoleHelpdesk, c.incidents))
	mux.Handle("GET /incidents/{id}", c.signedIn(auth.RoleHelpdesk, c.incident))
	mux.Handle("POST /incidents/{id}/ack", c.signedIn(auth.RoleHelpdesk, c.incidentMove(store.IncidentAcknowledged)))
	mux.Handle("POST /incidents/{id}/close", c.signedIn(auth.RoleOfficer, c.incidentMove(store.IncidentClosed)))
	mux.Handle("GET /evidence", c.signedIn(auth.RoleOfficer, c.evidenceForm))
	mux.Handle("GET /evidence/report", c.signedIn(auth.RoleOfficer, c.evidenceReport))
	mux.Handle("GET /evidence/export.csv", c.signedIn(auth.RoleOfficer, c.evidenceCSV))
	mux.Handle("GET /operators", c.signedIn(auth.RoleAdmin, c.operators))
	mux.Handle("POST /operators", c.signedIn(auth.RoleAdmin, c.createOperator))
	mux.Handle("POST /operators/{id}/disable", c.signedIn(auth.RoleAdmin, c.disableOperator))
	mux.Handle("POST /operators/{id}/unlock", c.signedIn(auth.RoleAdmin, c.unlockOperator))
}

// CanClose: officers and admins close incidents.
func (o *operator) CanClose() bool { return o.Role.Allows(auth.RoleOfficer) }

// CanExport: officers and admins export evidence.
func (o *operator) CanExport() bool { return o.Role.Allows(auth.RoleOfficer) }

// CanAdmin: admins manage operators.
func (o *operator) CanAdmin() bool { return o.Role.Allows(auth.RoleAdmin) }

const incidentPage = 100

type incidentsView struct {
	State     string
	States    []stateFilter
	Incidents []store.Incident
	Next      int64
}

type stateFilter struct {
	Value, Name string
	Selected    bool
}

func (c *Console) incidents(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "active"
	}
	v := incidentsView{State: state}
	valid := false
	for _, s := range []string{"active", store.IncidentOpen, store.IncidentAcknowledged, store.IncidentClosed, "all"} {
		v.States = append(v.States, stateFilter{Value: s, Name: p.Sprintf(i18n.ID("console.incident.state." + s)), Selected: s == state})
		valid = valid || s == state
	}
	before, err := strconv.ParseInt(q.Get("before"), 10, 64)
	if !valid || (q.Get("before") != "" && (err != nil || before < 0)) {
		c.fail(w, r, http.StatusBadRequest, op, "console.err.bad-form")
		return
	}
	f := store.IncidentFilter{State: state, BeforeID: before, Limit: incidentPage + 1}
	if state == "all" {
		f.State = ""
	}
	incs, err := c.st.Incidents(r.Context(), f)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if len(incs) > incidentPage {
		incs = incs[:incidentPage]
		v.Next = incs[len(incs)-1].ID
	}
	v.Incidents = incs
	c.render(w, r, http.StatusOK, "incidents", view{P: p, Op: op, CSRF: op.csrf(), Data: v})
}

func (c *Console) incident(w http.ResponseWriter, r *http.Request, op *operator) {
	in, ok := c.pathIncident(w, r, op)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "incident", view{P: i18n.NewPrinter(lang(r)), Op: op, CSRF: op.csrf(), Data: in})
}

// pathIncident loads the incident the path's {id} names; when there is
// none it has answered (404, or 500 on a store error) and ok is false.
func (c *Console) pathIncident(w http.ResponseWriter, r *http.Request, op *operator) (in store.Incident, ok bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.fail(w, r, http.StatusNotFound, op, "console.err.no-incident")
		return in, false
	}
	in, err = c.st.GetIncident(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, op, "console.err.no-incident")
		return in, false
	}
	if err != nil {
		c.internal(w, r, op, err)
		return in, false
	}
	return in, true
}

// incidentMove acknowledges or closes an incident, with a note; every
// transition goes to the audit log.
func (c *Console) incidentMove(to string) func(http.ResponseWriter, *http.Request, *operator) {
	return func(w http.ResponseWriter, r *http.Request, op *operator) {
		in, ok := c.pathIncident(w, r, op)
		if !ok {
			return
		}
		note := strings.TrimSpace(r.PostForm.Get("note"))
		in, err := c.admin.TransitionIncident(r.Context(), op.admin(), in.ID, to, note)
		if c.refused(w, r, op, err) {
			return
		}
		http.Redirect(w, r, "/incidents/"+strconv.FormatInt(in.ID, 10), http.StatusSeeOther)
	}
}
