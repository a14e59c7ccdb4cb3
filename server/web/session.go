package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// operator is the signed-in person of a request.
type operator struct {
	ID, Name string
	Role     auth.Role
	session  auth.Secret
}

func (o *operator) csrf() string {
	if o == nil {
		return ""
	}
	return auth.CSRFToken(o.session)
}

// RoleName is the role as shown.
func (o *operator) RoleName() string { return o.Role.String() }

// CanRevoke: officers and admins revoke devices.
func (o *operator) CanRevoke() bool { return o.Role.Allows(auth.RoleOfficer) }

const maxFormBytes = 64 << 10

func (c *Console) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// signedIn runs h for a live session of at least role need. POSTs must
// also carry the session's CSRF token. Everything refused is audited.
func (c *Console) signedIn(need auth.Role, h func(http.ResponseWriter, *http.Request, *operator)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		toLogin := func(reason string) {
			if r.Method != http.MethodGet {
				c.fail(w, r, http.StatusForbidden, nil, "console.err.signed-out")
				return
			}
			q := url.Values{"next": {r.URL.RequestURI()}}
			if reason != "" {
				q.Set("m", reason)
			}
			http.Redirect(w, r, "/login?"+q.Encode(), http.StatusSeeOther)
		}
		ck, err := r.Cookie(sessionCookie)
		if err != nil {
			toLogin("")
			return
		}
		sid := auth.Secret(ck.Value)
		hash, err := auth.HashSessionID(sid)
		if err != nil {
			c.clearCookie(w, sessionCookie)
			toLogin("")
			return
		}
		s, o, err := c.st.Session(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			c.clearCookie(w, sessionCookie)
			toLogin("expired")
			return
		}
		if err != nil {
			c.internal(w, r, nil, err)
			return
		}
		now := c.now()
		if now.Sub(s.LastSeen) > c.cfg.IdleTimeout || now.Sub(s.CreatedAt) > c.cfg.MaxAge || !o.DisabledAt.IsZero() {
			_ = c.st.DeleteSession(ctx, hash)
			_ = c.audit(ctx, o.ID, "console.session.expire", o.ID, "")
			c.clearCookie(w, sessionCookie)
			toLogin("expired")
			return
		}
		role, err := auth.ParseRole(o.Role)
		if err != nil {
			c.internal(w, r, nil, err)
			return
		}
		op := &operator{ID: o.ID, Name: o.Name, Role: role, session: sid}
		if !role.Allows(need) {
			c.n.denied.Add(1)
			_ = c.audit(ctx, o.ID, "console.denied", r.Method+" "+r.URL.Path, "role "+role.String()+" < "+need.String())
			c.fail(w, r, http.StatusForbidden, op, "console.err.forbidden")
			return
		}
		if r.Method == http.MethodPost {
			var perr error
			if isMultipart(r) { // the ledger upload
				r.Body = http.MaxBytesReader(w, r.Body, maxUploadBytes)
				perr = r.ParseMultipartForm(maxUploadBytes)
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
				perr = r.ParseForm()
			}
			if err := perr; err != nil || !auth.CheckCSRF(sid, r.PostForm.Get("csrf")) {
				c.n.denied.Add(1)
				_ = c.audit(ctx, o.ID, "console.denied", r.Method+" "+r.URL.Path, "CSRF token missing or wrong")
				c.fail(w, r, http.StatusForbidden, op, "console.err.csrf")
				return
			}
		}
		if err := c.st.TouchSession(ctx, hash, now); err != nil {
			c.internal(w, r, op, err)
			return
		}
		h(w, r, op)
	})
}

type loginView struct {
	Login string
	Next  string
}

// loginPage shows the sign-in form with a fresh double-submit token.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	p := i18n.NewPrinter(lang(r))
	v := view{P: p, Data: loginView{Next: LocalPath(r.URL.Query().Get("next"))}}
	if r.URL.Query().Get("m") == "expired" {
		v.Notice = p.Sprintf("console.login.expired")
	}
	c.showLogin(w, r, http.StatusOK, v)
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, v view) {
	pre := c.guard.newPreToken(c.now())
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(preTokenTTL / time.Second)})
	v.CSRF = pre
	c.render(w, r, status, "login", v)
}

// login checks login, password and TOTP code together. Whatever was
// wrong, the answer is the same; the audit log says what.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, http.StatusBadRequest, nil, "console.err.bad-form")
		return
	}
	f := r.PostForm
	next := LocalPath(f.Get("next"))
	login := strings.TrimSpace(f.Get("login"))
	again := func(status int, id i18n.ID) {
		if status != http.StatusForbidden {
			c.n.loginFailures.Add(1)
		}
		c.showLogin(w, r, status, view{P: p, Error: p.Sprintf(id), Data: loginView{Login: login, Next: next}})
	}
	now := c.now()
	pre, err := r.Cookie(preCookie)
	if err != nil || pre.Value == "" || f.Get("csrf") == "" || !c.guard.checkPreToken(pre.Value, f.Get("csrf"), now) {
		again(http.StatusForbidden, "console.err.csrf")
		return
	}
	// Admission, cheapest first (signin.go): address, login, hash slot.
	addr := peerAddr(r)
	wellFormed := login != "" && len(login) <= admin.MaxOperatorName && utf8.ValidString(login)
	refuse := func(status int, wait time.Duration, reason string, id i18n.ID) {
		c.n.throttled.Add(1)
		c.guard.fails.note(ctx, now, reason, login, addr)
		retryAfter(w, wait)
		again(status, id)
	}
	if wait, ok := c.guard.addr.take(addr, now); !ok {
		refuse(http.StatusTooManyRequests, wait, "throttled-address", "console.login.throttled")
		return
	}
	if wellFormed {
		if wait, ok := c.guard.login.take(strings.ToLower(login), now); !ok {
			refuse(http.StatusTooManyRequests, wait, "throttled-login", "console.login.throttled")
			return
		}
	}
	slot, release, ok := c.guard.acquire(ctx)
	if !ok {
		refuse(http.StatusServiceUnavailable, time.Second, "busy", "console.login.busy")
		return
	}
	defer release()
	pw, code := auth.Secret(f.Get("password")), f.Get("totp")
	if !wellFormed {
		slot.BurnPasswordCheck(pw)
		c.guard.fails.note(ctx, now, "malformed-login", login, addr)
		again(http.StatusUnauthorized, "console.login.failed")
		return
	}
	cred, o, err := c.st.OperatorLogin(ctx, login)
	if errors.Is(err, store.ErrNotFound) {
		slot.BurnPasswordCheck(pw)
		// One row per burst with counts, not one per try (signin.go).
		c.guard.fails.note(ctx, now, "unknown-login", login, addr)
		again(http.StatusUnauthorized, "console.login.failed")
		return
	}
	if err != nil {
		c.internal(w, r, nil, err)
		return
	}
	if now.Before(cred.LockedUntil) {
		_ = c.audit(ctx, o.ID, "console.login.fail", o.ID, "locked until "+cred.LockedUntil.UTC().Format("2006-01-02T15:04:05Z"))
		retryAfter(w, cred.LockedUntil.Sub(now))
		again(http.StatusTooManyRequests, "console.login.locked")
		return
	}
	pwOK := slot.CheckPassword(cred.PasswordHash, pw)
	seed, _, err := c.seeds.Open(o.ID, cred.TOTPSecret)
	if err != nil {
		c.internal(w, r, nil, fmt.Errorf("operator %s: %w", o.ID, err))
		return
	}
	step, codeOK := auth.CheckTOTP(seed, code, now)
	why := ""
	switch {
	case !pwOK:
		why = "wrong password"
	case !codeOK:
		why = "wrong TOTP code"
	case !o.DisabledAt.IsZero():
		why = "operator disabled"
	default:
		err := c.st.LoginSucceeded(ctx, o.ID, step, now)
		if errors.Is(err, store.ErrConflict) {
			why = "TOTP code already used"
		} else if err != nil {
			c.internal(w, r, nil, err)
			return
		}
	}
	if why != "" {
		// The failure is recorded with the count it raises.
		var l store.OperatorLogin
		var failed error
		_ = c.admin.Audited(ctx, store.AuditRecord{At: now, Actor: o.ID, Action: "console.login.fail", Target: o.ID, Detail: why},
			func(actx context.Context) error {
				l, failed = c.st.LoginFailed(actx, o.ID, now, c.cfg.MaxFailures, c.cfg.LockFor)
				return failed
			})
		if failed != nil {
			c.internal(w, r, nil, failed)
			return
		}
		if !l.LockedUntil.IsZero() && now.Before(l.LockedUntil) {
			c.n.lockouts.Add(1)
			_ = c.audit(ctx, "system", "console.lockout", o.ID, "locked until "+l.LockedUntil.UTC().Format("2006-01-02T15:04:05Z"))
			retryAfter(w, l.LockedUntil.Sub(now))
			again(http.StatusTooManyRequests, "console.login.locked")
			return
		}
		again(http.StatusUnauthorized, "console.login.failed")
		return
	}
	sid := auth.NewSessionID()
	hash, _ := auth.HashSessionID(sid)
	// The session exists only with its record.
	if err := c.admin.Audited(ctx, store.AuditRecord{At: now, Actor: o.ID, Action: "console.login", Target: o.ID},
		func(actx context.Context) error {
			return c.st.CreateSession(actx, store.ConsoleSession{IDHash: hash, OperatorID: o.ID, CreatedAt: now, LastSeen: now})
		}); err != nil {
		c.internal(w, r, nil, err)
		return
	}
	c.n.logins.Add(1)
	c.clearCookie(w, preCookie)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid.Reveal(), Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, op *operator) {
	hash, _ := auth.HashSessionID(op.session)
	if err := c.st.DeleteSession(r.Context(), hash); err != nil {
		c.internal(w, r, op, err)
		return
	}
	_ = c.audit(r.Context(), op.ID, "console.logout", op.ID, "")
	c.clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func isMultipart(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data")
}
