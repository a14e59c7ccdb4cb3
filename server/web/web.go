// Package web is the console for the security officer and the helpdesk:
// server-rendered pages (html/template, embedded, no JavaScript) served
// by mamori-server over HTTPS on a listener of their own.
//
// Security, in one place:
//   - Sign-in needs a password (argon2id) and a TOTP code, in one form, so
//     a failure never says which factor was wrong. Failures lock the login
//     for a while; each TOTP step is accepted once.
//   - A session is a random 256-bit ID in a __Host- cookie (Secure,
//     HttpOnly, SameSite=Strict); the store keeps only its SHA-256. It ends
//     after IdleTimeout without a request, or MaxAge after sign-in.
//   - Every POST carries a CSRF token (the sign-in form a double-submit
//     cookie; signed-in forms a token derived from the session ID) and must
//     come from this origin.
//   - Every page and action checks the operator's role on the server.
//   - Text from agents (hostnames, evidence, event attributes) is only ever
//     written through html/template's contextual escaping, and a strict
//     Content-Security-Policy forbids scripts altogether.
//   - Every operator action (sign-in, failure, lock-out, sign-out, revoke,
//     a refused action) goes to the audit log.
package web

import (
	"context"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the console reads. Operator actions write through
// server/admin (Deps.Admin); the console's own bookkeeping (sign-in,
// sessions) is the exception, see internal/walls.
type Store interface {
	store.Devices
	store.Events
	store.Policies
	store.Audit
	store.Console
	store.Exceptions // exceptions and the asset ledger (exceptions.go, ledger.go)
	store.Operators
	store.Evidence
	store.MFA // the MFA page reads enrolments and temporary codes (mfa.go)
}

// Config tunes the console.
type Config struct {
	// IdleTimeout ends a session this long after its last request.
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in, however busy.
	MaxAge time.Duration
	// MaxFailures failed sign-ins in a row lock the login for LockFor.
	MaxFailures int
	LockFor     time.Duration
	// Location is the time zone pages show times in.
	Location *time.Location

	// Sign-in admission (signin.go). HashMemory is the memory password
	// checks may take: one argon2id check takes a 19 MiB work area,
	// collected after each check, so HashMemory / 19 MiB run in parallel (at least one;
	// the default 24 MiB: one, which leaves the other cores to the agents). A sign-in that finds
	// no free slot within HashWait is answered 503 with Retry-After.
	HashMemory int64
	HashWait   time.Duration
	// AddrBurst sign-in attempts from one address at once, then one every
	// AddrEvery; LoginBurst and LoginEvery likewise for one login name
	// (known or not). Beyond them: 429 with Retry-After.
	AddrBurst  int
	AddrEvery  time.Duration
	LoginBurst int
	LoginEvery time.Duration
	// FailBurst: failures for unknown logins, and attempts refused before
	// any lookup, are audited as one row per FailBurst with counts.
	FailBurst time.Duration
	// CrossOriginWindow: the first cross-origin refusal of each origin and
	// request in a window is audited at once, the rest as one row with
	// their count when the window closes (crossorigin.go).
	CrossOriginWindow time.Duration
}

// DefaultConfig: 15 minutes idle, 8 hours at most, 5 failures lock for
// 15 minutes, times in JST.
func DefaultConfig() Config {
	return Config{
		IdleTimeout: 15 * time.Minute, MaxAge: 8 * time.Hour,
		MaxFailures: 5, LockFor: 15 * time.Minute,
		Location:   time.FixedZone("JST", 9*60*60),
		HashMemory: 24 << 20, HashWait: 250 * time.Millisecond,
		AddrBurst: 30, AddrEvery: 6 * time.Second,
		LoginBurst: 10, LoginEvery: 30 * time.Second,
		FailBurst: time.Minute, CrossOriginWindow: time.Minute,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.IdleTimeout <= 0 || c.MaxAge <= 0 || c.MaxFailures <= 0 || c.LockFor <= 0 || c.Location == nil {
		return errors.New("console: idle time-out, max age, max failures, lock-out time and location are required")
	}
	if c.HashMemory < passwordHashBytes || c.HashWait <= 0 || c.AddrBurst < 1 || c.AddrEvery <= 0 ||
		c.LoginBurst < 1 || c.LoginEvery <= 0 || c.FailBurst <= 0 || c.CrossOriginWindow <= 0 {
		return fmt.Errorf("console: sign-in limits: hash memory at least %d MiB, a hash wait, address and login bursts and rates, and an audit burst are required", passwordHashBytes>>20)
	}
	return nil
}

// Deps are the console's collaborators.
type Deps struct {
	Store  Store
	Config Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
	// Metrics, when set, adds the gRPC server's metrics (reports stored,
	// RPC calls and latencies) to /metrics.
	Metrics func(io.Writer)
	// Admin runs the operator actions (required): the same service
	// AdminService runs, so the console and mamorictl check, write and
	// audit alike. Its refusals are worded in refusal.go.
	Admin *admin.Service
	// OperatorSeeds opens operators' sealed TOTP seeds at sign-in
	// (required).
	OperatorSeeds *auth.SeedKey
	// AuditCA is the CA certificate whose key signs the audit log's
	// checkpoints: the evidence report verifies them with it. Without
	// it the report says the log's signatures were not checked.
	AuditCA *x509.Certificate
}

// Console serves the pages.
type Console struct {
	st      Store
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	metricx func(io.Writer)
	pages   map[string]*template.Template
	n       counters
	admin   *admin.Service
	guard   *signinGuard
	seeds   *auth.SeedKey
	// auditCA verifies the audit log's signed checkpoints (evidence.go).
	auditCA *x509.Certificate
	// chain is the audit chain verified so far (audit.go).
	chain chainCache
	// refusals counts cross-origin refusals (crossorigin.go).
	refusals *refusalAgg
}

// Cookie names. __Host- makes the browser insist on Secure, Path=/ and no
// Domain, so a sibling host cannot plant or read them.
const (
	sessionCookie = "__Host-mamori_session"
	preCookie     = "__Host-mamori_pre" // double-submit CSRF of the sign-in form
	langCookie    = "__Host-mamori_lang"
)

// New builds the console.
func New(d Deps) (*Console, error) {
	if d.Store == nil || d.Admin == nil || d.OperatorSeeds == nil {
		return nil, errors.New("console: a store, an admin service and the operator seed key are required")
	}
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{st: d.Store, cfg: d.Config, now: d.Now, log: d.Log, metricx: d.Metrics, pages: map[string]*template.Template{}, admin: d.Admin}
	c.guard = newSigninGuard(d.Config, c)
	c.refusals = &refusalAgg{window: d.Config.CrossOriginWindow, now: time.Now, write: c.audit}
	c.seeds = d.OperatorSeeds
	c.auditCA = d.AuditCA
	funcs := template.FuncMap{
		"time":       c.formatTime,
		"ts":         func(t *timestamppb.Timestamp) string { return c.formatTimestamp(t) },
		"stateClass": func(s mamoriv1.ControlState) string { return strings.ToLower(compliance.StateName(s)) },
		"compClass":  complianceClass,
	}
	// Policy, exceptions and the asset ledger (policy.go, exceptions.go, ledger.go).
	funcs["diffClass"] = func(op string) string { return map[string]string{"+": "add", "-": "del"}[op] }
	funcs["ctable"] = controlTable
	funcs["vis"] = visible
	funcs["inc"] = func(i int) int { return i + 1 }
	funcs["msg"] = func(p *i18n.Printer, prefix, key string) string { return p.Sprintf(i18n.ID(prefix + key)) }
	// The policy form's number + unit fields and date field (issue #19).
	funcs["durN"] = func(s string) string {
		if n, _, ok := splitDuration(s); ok {
			return fmt.Sprint(n)
		}
		return ""
	}
	funcs["durUnit"] = func(s, unit string) bool {
		_, u, ok := splitDuration(s)
		return (ok && u == unit) || (!ok && unit == "m")
	}
	funcs["list"] = func(xs ...string) []string { return xs }
	// query puts an encoded query string into a URL as it is: html/template
	// would escape a plain string's & and = as data. It is parsed and
	// encoded again, so only a well-formed query gets through.
	funcs["query"] = safeQuery
	funcs["isDate"] = func(s string) bool { _, err := time.Parse(time.DateOnly, s); return s == "" || err == nil }
	// Names of controls and modes in the reader's language (issue #19).
	funcs["ctlName"] = controlName
	funcs["actName"] = actionName
	funcs["modeText"] = func(p *i18n.Printer, m string) string {
		if s, ok := p.Lookup(i18n.ID("console.mode." + m)); ok {
			return s
		}
		return m
	}
	for _, name := range []string{"login", "fleet", "device", "search", "error",
		"policy", "policy_edit", "policy_form", "policy_confirm", "exceptions", "ledger", "devices", "audit"} {
		files := []string{"templates/layout.html", "templates/" + name + ".html"}
		if name == "device" || name == "exceptions" {
			files = append(files, "templates/device_exceptions.html")
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	if err := c.addEvidencePages(funcs); err != nil { // incidents.go
		return nil, fmt.Errorf("console templates: %w", err)
	}
	if err := c.addMFAPages(funcs); err != nil { // mfa.go
		return nil, fmt.Errorf("console templates: %w", err)
	}
	return c, nil
}

// Close writes what is still pending: the audit row of a burst of
// failed sign-ins in progress, and the counts of cross-origin refusals.
func (c *Console) Close(ctx context.Context) {
	c.guard.fails.Flush(ctx)
	c.refusals.Flush(ctx)
}

// Handler routes every console URL.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("GET /lang/{lang}", c.setLang)
	mux.HandleFunc("GET /healthz", c.healthz)
	mux.HandleFunc("GET /readyz", c.readyz)
	mux.HandleFunc("GET /metrics", c.metrics)
	mux.Handle("POST /logout", c.signedIn(auth.RoleHelpdesk, c.logout))
	mux.Handle("GET /{$}", http.RedirectHandler("/fleet", http.StatusSeeOther))
	mux.Handle("GET /fleet", c.signedIn(auth.RoleHelpdesk, c.fleet))
	mux.Handle("GET /search", c.signedIn(auth.RoleHelpdesk, c.search))
	mux.Handle("GET /devices", c.signedIn(auth.RoleHelpdesk, c.devices))
	mux.Handle("GET /audit", c.signedIn(auth.RoleHelpdesk, c.auditPage))
	mux.Handle("GET /devices/{id}", c.signedIn(auth.RoleHelpdesk, c.device))
	mux.Handle("POST /devices/{id}/revoke", c.signedIn(auth.RoleOfficer, c.revoke))
	mux.Handle("POST /devices/{id}/approve-reenrolment", c.signedIn(auth.RoleOfficer, c.approveReenrollment))
	// Policy, exceptions (例外措置), asset ledger (端末台帳).
	mux.Handle("GET /policy", c.signedIn(auth.RoleHelpdesk, c.policyPage))
	mux.Handle("GET /policy/edit", c.signedIn(auth.RoleOfficer, c.policyFormPage))
	mux.Handle("POST /policy/form", c.signedIn(auth.RoleOfficer, c.policyFormSubmit))
	mux.Handle("GET /policy/json", c.signedIn(auth.RoleOfficer, c.policyEdit))
	mux.Handle("POST /policy/preview", c.signedIn(auth.RoleOfficer, c.policyPreview))
	mux.Handle("POST /policy", c.signedIn(auth.RoleOfficer, c.policySave))
	mux.Handle("GET /exceptions", c.signedIn(auth.RoleHelpdesk, c.exceptionsPage))
	mux.Handle("POST /exceptions", c.signedIn(auth.RoleOfficer, c.createException))
	mux.Handle("POST /exceptions/{id}/revoke", c.signedIn(auth.RoleOfficer, c.revokeException))
	mux.Handle("GET /ledger", c.signedIn(auth.RoleHelpdesk, c.ledgerPage))
	mux.Handle("POST /ledger", c.signedIn(auth.RoleOfficer, c.importLedger))
	c.routeEvidence(mux) // incidents, evidence export, operators (incidents.go)
	c.routeMFA(mux)      // MFA users, operator password and TOTP resets (mfa.go)
	// Cross-origin POSTs are refused (Sec-Fetch-Site / Origin) before any
	// handler runs, on top of the CSRF tokens.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(c.crossOriginRefused))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders: no scripts, no framing, nothing cached, no referrer.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		h.ServeHTTP(w, r)
	})
}

// lang is the request's language: the toggle's cookie, else the browser's
// Accept-Language when it names English or Japanese, else Japanese.
func lang(r *http.Request) i18n.Lang {
	if ck, err := r.Cookie(langCookie); err == nil {
		switch ck.Value {
		case "en":
			return i18n.English
		case "ja":
			return i18n.Japanese
		}
	}
	h := r.Header.Get("Accept-Language")
	if l := i18n.LangFromAcceptLanguage(h); l == i18n.Japanese || namesEnglish(h) {
		return l
	}
	return i18n.Japanese
}

func namesEnglish(h string) bool {
	for _, part := range strings.Split(h, ",") {
		tag, _, _ := strings.Cut(part, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		if tag == "en" || strings.HasPrefix(tag, "en-") || tag == "*" {
			return true
		}
	}
	return false
}

// setLang is the language toggle: a plain link, so it works without
// JavaScript. It only sets a preference cookie and goes back to a local
// page.
func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.PathValue("lang")
	if l != "en" && l != "ja" {
		http.NotFound(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
	http.Redirect(w, r, LocalPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// view is what every template gets.
type view struct {
	P      *i18n.Printer
	Lang   string
	Op     *operator // nil when signed out
	CSRF   string
	Path   string
	Notice string
	Error  string
	Data   any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	if v.P == nil {
		v.P = i18n.NewPrinter(lang(r))
	}
	v.Lang = "ja"
	if v.P.Lang() == i18n.English {
		v.Lang = "en"
	}
	v.Path = r.URL.Path
	if q := r.URL.RawQuery; q != "" {
		v.Path += "?" + q
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// The answer to a form (a code shown once, a new operator): the
		// language toggle leads back to its section, which a GET can show.
		v.Path = "/" + strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.pages[page].ExecuteTemplate(w, "layout", v); err != nil {
		c.log.ErrorContext(r.Context(), "render console page", "page", page, "error", err)
	}
}

// fail shows an error page with a localized message.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, op *operator, id i18n.ID) {
	p := i18n.NewPrinter(lang(r))
	c.render(w, r, status, "error", view{P: p, Op: op, Error: p.Sprintf(id), CSRF: op.csrf()})
}

func (c *Console) internal(w http.ResponseWriter, r *http.Request, op *operator, err error) {
	c.log.ErrorContext(r.Context(), "console", "path", r.URL.Path, "error", err)
	c.fail(w, r, http.StatusInternalServerError, op, "console.err.internal")
}

// audit appends a record on its own (a sign-in, a refusal, an export).
func (c *Console) audit(ctx context.Context, actor, action, target, detail string) error {
	return c.admin.Audited(ctx, store.AuditRecord{At: c.now(), Actor: actor, Action: action, Target: target, Detail: detail}, nil)
}

// admin is the operator as server/admin's actions name it.
func (o *operator) admin() admin.Operator {
	return admin.Operator{ID: o.ID, Officer: o.Role.Allows(auth.RoleOfficer)}
}

// refused answers a refused action on an error page and reports whether
// err was one; an error that is not a refusal is internal.
func (c *Console) refused(w http.ResponseWriter, r *http.Request, op *operator, err error) bool {
	if err == nil {
		return false
	}
	p := i18n.NewPrinter(lang(r))
	status, msg, ok := refusal(p, err)
	if !ok {
		c.internal(w, r, op, err)
		return true
	}
	c.render(w, r, status, "error", view{P: p, Op: op, Error: msg, CSRF: op.csrf()})
	return true
}

func (c *Console) formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(c.cfg.Location).Format("2006-01-02 15:04:05 MST")
}

func (c *Console) formatTimestamp(t *timestamppb.Timestamp) string {
	if t == nil || (t.Seconds == 0 && t.Nanos == 0) {
		return "-"
	}
	return c.formatTime(t.AsTime())
}

func complianceClass(s mamoriv1.Compliance) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "COMPLIANCE_"))
}

// safeQuery is s, a query string, re-encoded as a URL part; "" when s
// does not parse.
func safeQuery(s string) template.URL {
	v, err := url.ParseQuery(s)
	if err != nil {
		return ""
	}
	return template.URL(v.Encode())
}
