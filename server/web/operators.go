package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/boombuler/barcode/qr"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// The operator admin page (role admin): list operators, create one with a
// console login (initial password chosen by the admin, TOTP enrolment
// shown once), disable, clear a lock-out. Every action is audited.

type operatorRow struct {
	store.OperatorAccount
	Locked   bool
	Disabled bool
	Self     bool
}

func (c *Console) operators(w http.ResponseWriter, r *http.Request, op *operator) {
	c.showOperators(w, r, op, http.StatusOK, "")
}

func (c *Console) showOperators(w http.ResponseWriter, r *http.Request, op *operator, status int, errID i18n.ID) {
	msg := ""
	if errID != "" {
		msg = i18n.NewPrinter(lang(r)).Sprintf(errID)
	}
	c.renderOperators(w, r, op, status, msg)
}

// renderOperators shows the operator list with an error (localized).
func (c *Console) renderOperators(w http.ResponseWriter, r *http.Request, op *operator, status int, problem string) {
	p := i18n.NewPrinter(lang(r))
	ops, err := c.st.ListOperators(r.Context())
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	now := c.now()
	rows := make([]operatorRow, 0, len(ops))
	for _, o := range ops {
		rows = append(rows, operatorRow{OperatorAccount: o, Locked: now.Before(o.LockedUntil), Disabled: !o.DisabledAt.IsZero(), Self: o.ID == op.ID})
	}
	c.render(w, r, status, "operators", view{P: p, Op: op, CSRF: op.csrf(), Data: rows, Error: problem})
}

type createdView struct {
	Name, Login, Role string
	TOTPSecret        string
	TOTPURL           string
	QR                template.HTML
}

func (c *Console) createOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	f := r.PostForm
	role, err := auth.ParseRole(f.Get("role"))
	if err != nil {
		c.showOperators(w, r, op, http.StatusBadRequest, "console.err.operator-form")
		return
	}
	made, err := c.admin.CreateOperator(r.Context(), op.admin(), admin.NewOperator{Name: f.Get("name"), Login: f.Get("login"),
		Role: role, Password: auth.Secret(f.Get("password"))})
	if c.operatorRefused(w, r, op, err) {
		return
	}
	p := i18n.NewPrinter(lang(r))
	svg, err := qrSVG(made.TOTPURL)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	// Shown once: the page is not cached (Cache-Control: no-store) and the
	// secrets are not stored in a form the server can show again.
	c.render(w, r, http.StatusOK, "operator-created", view{P: p, Op: op, CSRF: op.csrf(), Data: createdView{
		Name: made.Operator.Name, Login: made.Login, Role: made.Operator.Role,
		TOTPSecret: made.TOTPSecret.Reveal(), TOTPURL: made.TOTPURL, QR: svg,
	}})
}

// operatorRefused answers a refused operator action: on the operator
// list, or on an error page for an operator that is not there. It
// reports whether err was not nil.
func (c *Console) operatorRefused(w http.ResponseWriter, r *http.Request, op *operator, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, admin.ErrNotFound) {
		return c.refused(w, r, op, err)
	}
	p := i18n.NewPrinter(lang(r))
	status, msg, ok := refusal(p, err)
	if !ok {
		c.internal(w, r, op, err)
		return true
	}
	c.renderOperators(w, r, op, status, msg)
	return true
}

func (c *Console) disableOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	if c.operatorRefused(w, r, op, c.admin.DisableOperator(r.Context(), op.admin(), r.PathValue("id"))) {
		return
	}
	http.Redirect(w, r, "/operators", http.StatusSeeOther)
}

func (c *Console) unlockOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	if c.operatorRefused(w, r, op, c.admin.UnlockOperator(r.Context(), op.admin(), r.PathValue("id"))) {
		return
	}
	http.Redirect(w, r, "/operators", http.StatusSeeOther)
}

// qrSVG draws the otpauth URL as an inline SVG QR code (no image request,
// no script): one rect per dark module, a 4-module quiet zone.
func qrSVG(text string) (template.HTML, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return "", fmt.Errorf("QR code: %w", err)
	}
	n := code.Bounds().Dx()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="qr" id="totp-qr" viewBox="0 0 %d %d" width="240" height="240" role="img" aria-label="QR">`, n+8, n+8)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, n+8, n+8)
	b.WriteString(`<path fill="#000" d="`)
	for y := range n {
		for x := range n {
			if r, _, _, _ := code.At(x, y).RGBA(); r == 0 {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+4, y+4)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	// Built only from numbers: nothing of the URL is in the markup.
	return template.HTML(b.String()), nil //nolint:gosec // numbers only
}
