package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/boombuler/barcode/qr"
	"github.com/google/uuid"

	"github.com/mamori-dev/mamori/internal/i18n"
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
	v := view{P: p, Op: op, CSRF: op.csrf(), Data: rows}
	if errID != "" {
		v.Error = p.Sprintf(errID)
	}
	c.render(w, r, status, "operators", v)
}

type createdView struct {
	Name, Login, Role string
	Token             string
	TOTPSecret        string
	TOTPURL           string
	QR                template.HTML
}

func (c *Console) createOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	ctx := r.Context()
	f := r.PostForm
	name, login := strings.TrimSpace(f.Get("name")), strings.TrimSpace(f.Get("login"))
	role, err := auth.ParseRole(f.Get("role"))
	pw := auth.Secret(f.Get("password"))
	if err != nil || name == "" || login == "" || len(name) > 128 || len(login) > 128 || !utf8.ValidString(name) || !utf8.ValidString(login) ||
		strings.ContainsAny(login, " \t\r\n") {
		c.showOperators(w, r, op, http.StatusBadRequest, "console.err.operator-form")
		return
	}
	hash, err := auth.HashPassword(pw)
	if errors.Is(err, auth.ErrWeakPassword) {
		c.showOperators(w, r, op, http.StatusBadRequest, "console.err.password")
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	secret, url, err := auth.NewTOTPSecret(login)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	now := c.now()
	tok := auth.NewToken(auth.OperatorTokenPrefix)
	o := store.Operator{ID: uuid.NewString(), Name: name, Role: role.String(), TokenHash: auth.HashToken(tok.Reveal()), CreatedAt: now}
	// The login is checked first, so a taken one leaves no operator
	// behind.
	if _, _, err := c.st.OperatorLogin(ctx, login); err == nil {
		c.showOperators(w, r, op, http.StatusConflict, "console.err.login-taken")
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		c.internal(w, r, op, err)
		return
	}
	// The operator and its API token are recorded as they are stored.
	actx, recorded := c.withAudit(ctx, op.ID, "operator.create", o.ID, fmt.Sprintf("name=%s role=%s login=%s (console)", name, role, login))
	if err := c.st.CreateOperator(actx, o); err != nil {
		c.internal(w, r, op, err)
		return
	}
	if err := recorded(); err != nil {
		c.internal(w, r, op, err)
		return
	}
	err = c.st.SetOperatorLogin(ctx, store.OperatorLogin{OperatorID: o.ID, Login: login, PasswordHash: hash, TOTPSecret: secret.Reveal(), UpdatedAt: now})
	if errors.Is(err, store.ErrConflict) {
		// Taken by someone else meanwhile: the operator just made is
		// disabled again, and that is recorded too.
		dctx, recorded := c.withAudit(ctx, op.ID, "operator.disable", o.ID, "login "+login+" taken (console)")
		if err := c.st.DisableOperator(dctx, o.ID, now); err != nil {
			c.internal(w, r, op, err)
			return
		}
		if err := recorded(); err != nil {
			c.internal(w, r, op, err)
			return
		}
		c.showOperators(w, r, op, http.StatusConflict, "console.err.login-taken")
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	p := i18n.NewPrinter(lang(r))
	svg, err := qrSVG(url)
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	// Shown once: the page is not cached (Cache-Control: no-store) and the
	// secrets are not stored in a form the server can show again.
	c.render(w, r, http.StatusOK, "operator-created", view{P: p, Op: op, CSRF: op.csrf(), Data: createdView{
		Name: name, Login: login, Role: role.String(), Token: tok.Reveal(), TOTPSecret: secret.Reveal(), TOTPURL: url, QR: svg,
	}})
}

func (c *Console) disableOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	id := r.PathValue("id")
	if id == op.ID {
		c.showOperators(w, r, op, http.StatusBadRequest, "console.err.self")
		return
	}
	actx, recorded := c.withAudit(r.Context(), op.ID, "operator.disable", id, "(console)")
	err := c.st.DisableOperator(actx, id, c.now())
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, op, "console.err.no-operator")
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if err := recorded(); err != nil {
		c.internal(w, r, op, err)
		return
	}
	http.Redirect(w, r, "/operators", http.StatusSeeOther)
}

func (c *Console) unlockOperator(w http.ResponseWriter, r *http.Request, op *operator) {
	id := r.PathValue("id")
	actx, recorded := c.withAudit(r.Context(), op.ID, "operator.unlock", id, "(console)")
	err := c.st.ResetLockout(actx, id, c.now())
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, op, "console.err.no-operator")
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	if err := recorded(); err != nil {
		c.internal(w, r, op, err)
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
