package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/exception"
	"github.com/mamori-dev/mamori/server/store"
)

// Exceptions (例外措置): the officer approves a time-boxed exception for
// one USB device on one terminal or a group, optionally for one user; the
// helpdesk reads. Approval and revocation are audited.

const (
	exceptionListLimit = 500
	// activeListLimit bounds the exceptions in force listed (each row
	// looks up its terminal's hostname).
	activeListLimit = 2000
	expiryLayout    = "2006-01-02T15:04" // <input type="datetime-local">
)

// exceptionRow is one exception as listed.
type exceptionRow struct {
	ID, USB, User      string
	DeviceID, Hostname string
	Group              string
	Reason, CreatedBy  string
	CreatedAt          time.Time
	ExpiresAt          time.Time
	RevokedAt          time.Time
	RevokedBy          string
	RevokeReason       string
	Active             bool
	Status             string
}

type exceptionsView struct {
	Active, Inactive []exceptionRow
	Form             exceptionForm
	MinExpiry        string
}

type exceptionForm struct {
	USB, User, Device, Group, Reason, Expires string
}

func (c *Console) exceptionRows(ctx context.Context, p *i18n.Printer, es []store.Exception, now time.Time) []exceptionRow {
	names := map[string]string{}
	hosts := map[string]string{}
	var out []exceptionRow
	for _, e := range es {
		row := exceptionRow{ID: e.ID, USB: exception.USB(e), User: e.User, DeviceID: e.DeviceID, Group: e.Group,
			Reason: e.Reason, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, RevokedAt: e.RevokedAt,
			RevokeReason: e.RevokeReason, Active: e.ActiveAt(now)}
		if _, ok := names[e.CreatedBy]; !ok {
			names[e.CreatedBy] = e.CreatedBy
			if o, err := c.st.GetOperator(ctx, e.CreatedBy); err == nil {
				names[e.CreatedBy] = o.Name
			}
		}
		row.CreatedBy = names[e.CreatedBy]
		if e.RevokedBy != "" {
			if _, ok := names[e.RevokedBy]; !ok {
				names[e.RevokedBy] = e.RevokedBy
				if o, err := c.st.GetOperator(ctx, e.RevokedBy); err == nil {
					names[e.RevokedBy] = o.Name
				}
			}
			row.RevokedBy = names[e.RevokedBy]
		}
		if e.DeviceID != "" {
			if _, ok := hosts[e.DeviceID]; !ok {
				hosts[e.DeviceID] = ""
				if d, err := c.st.GetDevice(ctx, e.DeviceID); err == nil {
					hosts[e.DeviceID] = d.Facts.GetHostname()
				}
			}
			row.Hostname = hosts[e.DeviceID]
		}
		switch {
		case !e.RevokedAt.IsZero():
			row.Status = p.Sprintf("console.exc.revoked")
		case row.Active:
			row.Status = p.Sprintf("console.exc.active")
		default:
			row.Status = p.Sprintf("console.exc.expired")
		}
		out = append(out, row)
	}
	return out
}

func (c *Console) exceptionsPage(w http.ResponseWriter, r *http.Request, op *operator) {
	c.renderExceptions(w, r, op, http.StatusOK, exceptionForm{}, "")
}

func (c *Console) renderExceptions(w http.ResponseWriter, r *http.Request, op *operator, status int, f exceptionForm, problem string) {
	ctx := r.Context()
	p := i18n.NewPrinter(lang(r))
	now := c.now()
	// Every exception in force, however many ended since; then the most
	// recent ones that ended.
	active, err := c.st.ListExceptions(ctx, store.ExceptionFilter{ActiveAt: now, Limit: activeListLimit})
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	recent, err := c.st.ListExceptions(ctx, store.ExceptionFilter{Limit: exceptionListLimit})
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	v := exceptionsView{Form: f, MinExpiry: now.In(c.cfg.Location).Format(expiryLayout)}
	v.Active = c.exceptionRows(ctx, p, active, now)
	for _, row := range c.exceptionRows(ctx, p, recent, now) {
		if !row.Active {
			v.Inactive = append(v.Inactive, row)
		}
	}
	c.render(w, r, status, "exceptions", view{P: p, Op: op, CSRF: op.csrf(), Error: problem, Data: v})
}

// createException is the officer's approval; role and CSRF are checked.
// The action is admin.Service.CreateException.
func (c *Console) createException(w http.ResponseWriter, r *http.Request, op *operator) {
	p := i18n.NewPrinter(lang(r))
	f := exceptionForm{USB: strings.TrimSpace(r.PostForm.Get("usb")), User: strings.TrimSpace(r.PostForm.Get("user")),
		Device: strings.TrimSpace(r.PostForm.Get("device")), Group: strings.TrimSpace(r.PostForm.Get("group")),
		Reason: strings.TrimSpace(r.PostForm.Get("reason")), Expires: strings.TrimSpace(r.PostForm.Get("expires"))}
	if err := admin.CheckString("exception.create", "expires", f.Expires, admin.MaxShortString); err != nil {
		c.renderExceptions(w, r, op, http.StatusBadRequest, exceptionForm{}, p.Sprintf("console.err.bad-form"))
		return
	}
	expires, err := time.ParseInLocation(expiryLayout, f.Expires, c.cfg.Location)
	if err != nil && f.Expires != "" {
		c.renderExceptions(w, r, op, http.StatusBadRequest, f, p.Sprintf("console.exc.err-expiry"))
		return
	}
	e, err := c.admin.CreateException(r.Context(), op.admin(), admin.ExceptionRequest{USB: f.USB, User: f.User,
		Device: f.Device, Group: f.Group, Reason: f.Reason, ExpiresAt: expires})
	if status, msg, ok := refusal(p, err, f.Device); ok {
		if errors.Is(err, admin.ErrLimit) {
			f = exceptionForm{} // not shown again: too long, or not UTF-8
		}
		c.renderExceptions(w, r, op, status, f, msg)
		return
	}
	if err != nil {
		c.internal(w, r, op, err)
		return
	}
	http.Redirect(w, r, "/exceptions#x-"+e.ID, http.StatusSeeOther)
}

// revokeException ends an exception early (officer):
// admin.Service.RevokeException.
func (c *Console) revokeException(w http.ResponseWriter, r *http.Request, op *operator) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	_, err := c.admin.RevokeException(r.Context(), op.admin(), r.PathValue("id"), reason)
	if c.refused(w, r, op, err) {
		return
	}
	http.Redirect(w, r, "/exceptions", http.StatusSeeOther)
}

// deviceExceptions is the device page's section: the device's own and
// its group's exceptions, and the uses among its recent events.
type deviceExceptions struct {
	List []exceptionRow
	Uses []eventView
	// Files are the files written to removable media under an exception
	// (agent/media's file log): what left the terminal, clause 6(3)①.
	Files []eventView
}

func (c *Console) deviceExceptions(ctx context.Context, p *i18n.Printer, d store.Device, evs []eventView) (*deviceExceptions, error) {
	es, err := c.st.ListExceptions(ctx, store.ExceptionFilter{DeviceID: d.ID, Group: d.Group, Limit: 50})
	if err != nil {
		return nil, err
	}
	out := &deviceExceptions{List: c.exceptionRows(ctx, p, es, c.now())}
	for _, e := range evs {
		if e.Kind == "media_exception_used" {
			out.Uses = append(out.Uses, e)
		}
	}
	// The files from the file log itself, not from the recent events: a
	// busy terminal's other events must not push them off the page.
	files, err := c.st.ListFileLog(ctx, store.FileLogFilter{To: c.now().Add(time.Hour), DeviceID: d.ID, Newest: true, Limit: deviceFiles})
	if err != nil {
		return nil, err
	}
	for _, e := range files {
		out.Files = append(out.Files, eventViewOf(p, e))
	}
	return out, nil
}

// deviceFiles is how many of its file log records the device page shows
// (newest first); the evidence report lists all of them.
const deviceFiles = 100

// effectiveFor is the device's effective policy, by the server's rules
// (server/exception): the device page judges OFFLINE with its group's
// max report age.
func (c *Console) effectiveFor(ctx context.Context, d store.Device, base *mamoriv1.Policy) (*mamoriv1.Policy, error) {
	now := c.now()
	es, err := c.st.ListExceptions(ctx, store.ExceptionFilter{DeviceID: d.ID, Group: d.Group, ActiveAt: now, Limit: exception.MaxActive})
	if err != nil {
		return nil, err
	}
	return exception.Effective(base, es, d.ID, d.Group, now), nil
}
