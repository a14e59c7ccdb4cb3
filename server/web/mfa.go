package web

import (
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// The MFA page: the helpdesk reads who has which factor,
// unlocks a user on one terminal or all and issues temporary codes; the
// officer also enrols a user (TOTP) and resets one. The actions are
// server/admin's, the same AdminService runs, so the console and
// mamorictl check, write and audit alike.
// A code or secret is shown once, on the answer to the POST (not cached,
// never in a URL, a cookie, the log or the audit log).
//
// The operator admin additions are here too (role admin): set a new
// password for an operator, or give it a new TOTP secret.

// addMFAPages parses this part's templates.
func (c *Console) addMFAPages(funcs template.FuncMap) error {
	funcs["vis"] = visible
	for _, name := range []string{"mfa", "mfa_code", "mfa_enrolled", "mfa_operator_totp"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	return nil
}

// routeMFA adds this part's routes. Every one checks the role on the
// server (signedIn), by URL and by form.
func (c *Console) routeMFA(mux *http.ServeMux) {
	mux.Handle("GET /mfa", c.signedIn(auth.RoleHelpdesk, c.mfaPage))
	mux.Handle("POST /mfa/unlock", c.signedIn(auth.RoleHelpdesk, c.mfaUnlock))
	mux.Handle("POST /mfa/temp-code", c.signedIn(auth.RoleHelpdesk, c.mfaTempCode))
	mux.Handle("POST /mfa/enroll", c.signedIn(auth.RoleOfficer, c.mfaEnroll))
	mux.Handle("POST /mfa/reset", c.signedIn(auth.RoleOfficer, c.mfaReset))
	mux.Handle("POST /operators/{id}/password", c.signedIn(auth.RoleAdmin, c.operatorPassword))
	mux.Handle("POST /operators/{id}/totp", c.signedIn(auth.RoleAdmin, c.operatorTOTP))
}

// CanManageMFA: officers and admins enrol and reset MFA users.
func (o *operator) CanManageMFA() bool { return o != nil && o.Role.Allows(auth.RoleOfficer) }

type mfaRow struct {
	User, Method, TokenSerial string
	EnrolledAt                time.Time
	RecoveryLeft, TempActive  int
	// Valid: the name is one the actions accept (a name that is not
	// cannot have been enrolled through them; it is only shown).
	Valid bool
}

type mfaView struct {
	Users      []mfaRow
	DefaultTTL int // minutes
	MinTTL     int
	MaxTTL     int
}

func (c *Console) mfaPage(w http.ResponseWriter, r *http.Request, op *operator) {
	c.showMFA(w, r, op, http.StatusOK, "", "")
}

// showMFA renders the list with a notice or an error (already localized).
func (c *Console) showMFA(w http.ResponseWriter, r *http.Request, op *operator, status int, notice, problem string) {
	ctx := r.Context()
	users, err := c.st.MFAUsers(ctx)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	live, err := c.st.MFATempCodes(ctx, c.now())
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	temp := map[string]int{}
	for _, t := range live {
		temp[t.User]++
	}
	rows := make([]mfaRow, 0, len(users))
	for _, u := range users {
		m := u.Method
		if m == "" {
			m = store.MFAMethodTOTP
		}
		rows = append(rows, mfaRow{User: u.User, Method: m, TokenSerial: u.TokenSerial, EnrolledAt: u.CreatedAt,
			RecoveryLeft: len(u.RecoveryHashes), TempActive: temp[u.User], Valid: mfa.ValidUser(u.User) == nil})
		delete(temp, u.User)
	}
	for u, n := range temp { // temporary codes of users without an enrolment
		rows = append(rows, mfaRow{User: u, Method: "none", TempActive: n, Valid: mfa.ValidUser(u) == nil})
	}
	slices.SortFunc(rows, func(a, b mfaRow) int { return strings.Compare(a.User, b.User) })
	v := view{P: i18n.NewPrinter(lang(r)), Op: op, CSRF: op.csrf(), Notice: notice, Error: problem, Data: mfaView{
		Users:      rows,
		DefaultTTL: int(mfa.DefaultTempCodeTTL / time.Minute),
		MinTTL:     int(mfa.MinTempCodeTTL / time.Minute),
		MaxTTL:     int(mfa.MaxTempCodeTTL / time.Minute),
	}}
	c.render(w, r, status, "mfa", v)
}

// mfaFailed shows why an MFA action was refused, on the list.
func (c *Console) mfaFailed(w http.ResponseWriter, r *http.Request, op *operator, err error) {
	p := i18n.NewPrinter(lang(r))
	status, msg, ok := refusal(p, err)
	if !ok {
		c.internal(w, r, op, err)
		return
	}
	c.showMFA(w, r, op, status, "", msg)
}

// formUser is the form's user field, trimmed (the action checks it).
func formUser(r *http.Request) string { return strings.TrimSpace(r.PostForm.Get("user")) }

// mfaUnlock clears a user's lock-out on one terminal (ID or hostname) or
// on every one (no terminal given).
func (c *Console) mfaUnlock(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	user := formUser(r)
	dev := strings.TrimSpace(r.PostForm.Get("device"))
	if err := admin.CheckString("mfa.unlock", "device", dev, admin.MaxShortString); err != nil {
		c.mfaFailed(w, r, op, err)
		return
	}
	var deviceID, host string
	if dev != "" {
		d, err := c.st.FindDevice(ctx, dev)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAmbiguous) {
			c.showMFA(w, r, op, http.StatusBadRequest, "", p.Sprintf("console.mfa.err.device", visible(dev)))
			return
		}
		if err != nil {
			c.internal(w, r, op, err)
			return
		}
		deviceID, host = d.ID, d.Facts.GetHostname()
	}
	if _, err := c.admin.UnlockMFA(ctx, op.admin(), user, deviceID); err != nil {
		c.mfaFailed(w, r, op, err)
		return
	}
	notice := p.Sprintf("console.mfa.unlocked-all", user)
	if deviceID != "" {
		notice = p.Sprintf("console.mfa.unlocked-device", user, visible(host), deviceID)
	}
	c.showMFA(w, r, op, http.StatusOK, notice, "")
}

type codeView struct {
	User      string
	Code      string
	ExpiresAt time.Time
}

// mfaTempCode issues a one-time temporary code and shows it once.
func (c *Console) mfaTempCode(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	ttl := mfa.DefaultTempCodeTTL
	if s := strings.TrimSpace(r.PostForm.Get("expires")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > int(mfa.MaxTempCodeTTL/time.Minute) {
			n = -1 // the action refuses it, with the range
		}
		ttl = time.Duration(n) * time.Minute
	}
	code, rec, err := c.admin.IssueMFATempCode(r.Context(), op.admin(), formUser(r), "", ttl)
	if err != nil {
		c.mfaFailed(w, r, op, err)
		return
	}
	// Shown once: the answer to this POST is not cached (no-store) and the
	// server keeps only the code's salted hash.
	c.render(w, r, http.StatusOK, "mfa_code", view{P: p, Op: op, CSRF: op.csrf(),
		Data: codeView{User: rec.User, Code: code, ExpiresAt: rec.ExpiresAt}})
}

type enrolledView struct {
	User          string
	URI           string
	QR            template.HTML
	RecoveryCodes []string
}

// mfaEnroll enrols a new user with a TOTP secret (officer). An enrolled
// user must be reset first, so a typo cannot replace someone's factor.
func (c *Console) mfaEnroll(w http.ResponseWriter, r *http.Request, op *operator) {
	e, err := c.admin.EnrollMFA(r.Context(), op.admin(), formUser(r), false)
	if err != nil {
		c.mfaFailed(w, r, op, err)
		return
	}
	svg, err := qrSVG(e.URI)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	c.render(w, r, http.StatusOK, "mfa_enrolled", view{P: i18n.NewPrinter(lang(r)), Op: op, CSRF: op.csrf(),
		Data: enrolledView{User: e.Record.User, URI: e.URI, QR: svg, RecoveryCodes: e.RecoveryCodes}})
}

// mfaReset deletes a user's factors (officer); a reason is required.
func (c *Console) mfaReset(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	user := formUser(r)
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	// The console asks for a reason (AdminService leaves it optional); its
	// limit is the action's.
	if reason == "" {
		c.showMFA(w, r, op, http.StatusBadRequest, "", p.Sprintf("console.err.reason"))
		return
	}
	if err := c.admin.ResetMFA(r.Context(), op.admin(), user, reason); err != nil {
		c.mfaFailed(w, r, op, err)
		return
	}
	c.showMFA(w, r, op, http.StatusOK, p.Sprintf("console.mfa.reset-done", user), "")
}

// operatorPassword sets a new initial password chosen by the admin
// (admin.Service.ResetOperatorPassword). The TOTP secret stays, so the
// operator signs in with the new password and their authenticator.
func (c *Console) operatorPassword(w http.ResponseWriter, r *http.Request, op *operator) {
	id := r.PathValue("id")
	err := c.admin.ResetOperatorPassword(r.Context(), op.admin(), id, auth.Secret(r.PostForm.Get("password")))
	if c.operatorRefused(w, r, op, err) {
		return
	}
	http.Redirect(w, r, "/operators#op-"+id, http.StatusSeeOther)
}

// operatorTOTP gives the operator a new TOTP secret
// (admin.Service.ResetOperatorTOTP), shown once with its QR code. The
// password stays.
func (c *Console) operatorTOTP(w http.ResponseWriter, r *http.Request, op *operator) {
	login, secret, url, err := c.admin.ResetOperatorTOTP(r.Context(), op.admin(), r.PathValue("id"))
	if c.operatorRefused(w, r, op, err) {
		return
	}
	svg, err := qrSVG(url)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	c.render(w, r, http.StatusOK, "mfa_operator_totp", view{P: i18n.NewPrinter(lang(r)), Op: op, CSRF: op.csrf(),
		Data: createdView{Login: login, TOTPSecret: secret.Reveal(), TOTPURL: url, QR: svg}})
}
