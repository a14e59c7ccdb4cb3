package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/exception"
	"github.com/mamori-dev/mamori/server/mfa"
)

// The console's answer to a refused operator action (server/admin), in
// one place: the HTTP status and the message by the refusal's action,
// kind and field. The handlers only choose the page it is shown on (the
// form again, the list, an error page).

// refusalRule is one row of the table: the first row whose action (a
// prefix: "mfa." is every MFA action; "" any), kind and field ("" any)
// match the refusal gives the message.
type refusalRule struct {
	action string
	kind   error
	field  string
	msg    i18n.ID
	// detail: the message takes the refusal's own (English) wording as
	// its argument, instead of the handler's arguments.
	detail bool
	// args, when set, gives the message's arguments instead of the
	// handler's.
	args func() []any
}

var refusalRules = []refusalRule{
	// Reasons and limits, whatever the action.
	{action: "", kind: admin.ErrInvalid, field: "reason", msg: "console.err.reason"},
	{action: "ledger.import", kind: admin.ErrInvalid, field: "file", msg: "console.ledger.err-refused"},
	{action: "", kind: admin.ErrLimit, msg: "console.err.bad-form"},
	// Exceptions (例外措置).
	{action: "exception.create", kind: admin.ErrNotFound, field: "device", msg: "console.exc.err-device"},
	{action: "exception.create", kind: admin.ErrAmbiguous, field: "device", msg: "console.exc.err-device"},
	{action: "exception.create", kind: admin.ErrInvalid, msg: "console.exc.err-invalid", detail: true},
	{action: "exception.revoke", kind: admin.ErrNotFound, msg: "console.exc.err-unknown"},
	{action: "exception.revoke", kind: admin.ErrConflict, msg: "console.exc.err-revoked"},
	// Devices and policy.
	{action: "device.revoke", kind: admin.ErrNotFound, msg: "console.err.no-device"},
	{action: "device.approve-reenrolment", kind: admin.ErrNotFound, msg: "console.err.no-device"},
	{action: "device.approve-reenrolment", kind: admin.ErrInvalid, field: "device", msg: "console.device.err-not-clone"},
	{action: "device.approve-reenrolment", kind: admin.ErrConflict, msg: "console.device.err-approve-conflict"},
	{action: "policy.set", kind: admin.ErrConflict, msg: "console.policy.err-conflict"},
	{action: "policy.set", kind: admin.ErrInvalid, msg: "console.policy.err-invalid", detail: true},
	// Incidents.
	{action: "incident.", kind: admin.ErrInvalid, field: "note", msg: "console.err.note"},
	{action: "incident.", kind: admin.ErrNotFound, msg: "console.err.no-incident"},
	{action: "incident.", kind: admin.ErrConflict, msg: "console.err.incident-state"},
	// Operators (role admin).
	{action: "operator.", kind: admin.ErrInvalid, field: "form", msg: "console.err.operator-form"},
	{action: "operator.", kind: admin.ErrInvalid, field: "password", msg: "console.err.password"},
	{action: "operator.", kind: admin.ErrExists, field: "login", msg: "console.err.login-taken"},
	{action: "operator.disable", kind: admin.ErrInvalid, field: "self", msg: "console.err.self"},
	{action: "operator.", kind: admin.ErrInvalid, field: "self", msg: "console.operators.err.self-reset"},
	{action: "operator.", kind: admin.ErrNotFound, msg: "console.err.no-operator"},
	{action: "operator.", kind: admin.ErrConflict, field: "disabled", msg: "console.operators.err.disabled"},
	{action: "operator.", kind: admin.ErrConflict, field: "login", msg: "console.operators.err.no-login"},
	// The MFA lifecycle.
	{action: "mfa.", kind: admin.ErrNotFound, field: "device", msg: "console.mfa.err.device"},
	{action: "mfa.temp_code", kind: admin.ErrForbidden, field: "privileged", msg: "console.mfa.err.privileged", detail: true},
	{action: "mfa.temp_code", kind: admin.ErrInvalid, field: "privileged", msg: "console.mfa.err.privileged", detail: true},
	{action: "mfa.", kind: admin.ErrInvalid, field: "expires_in", msg: "console.mfa.err.expiry", args: func() []any {
		return []any{int(mfa.MinTempCodeTTL / time.Minute), int(mfa.MaxTempCodeTTL / time.Minute)}
	}},
	{action: "mfa.", kind: admin.ErrInvalid, msg: "console.mfa.err.invalid"},
	{action: "mfa.", kind: admin.ErrNotFound, msg: "console.mfa.err.not-enrolled"},
	{action: "mfa.", kind: admin.ErrExists, msg: "console.mfa.err.enrolled"},
	{action: "mfa.", kind: admin.ErrUnavailable, msg: "console.mfa.err.no-key"},
}

// refusal words err for the operator: the HTTP status and the localized
// message (args fill the message's verbs). ok is false when err is not a
// refusal the table knows: the handler answers with an internal error.
//
// The status follows the kind: 400 for what the form got wrong (a value,
// and a device named in the form that is not there or not one), 404 for
// what the URL names and is gone, 409 for a record that changed, 503 for
// what this server cannot do.
func refusal(p *i18n.Printer, err error, args ...any) (status int, msg string, ok bool) {
	var e *admin.Error
	if !errors.As(err, &e) {
		return 0, "", false
	}
	for _, r := range refusalRules {
		if !strings.HasPrefix(e.Action, r.action) || !errors.Is(err, r.kind) || (r.field != "" && r.field != e.Field) {
			continue
		}
		if r.args != nil {
			args = r.args()
		}
		if r.detail {
			args = []any{strings.TrimPrefix(e.Error(), exception.ErrInvalid.Error()+": ")}
		}
		return refusalStatus(e), p.Sprintf(r.msg, args...), true
	}
	return 0, "", false
}

func refusalStatus(e *admin.Error) int {
	switch e.Kind {
	case admin.ErrNotFound, admin.ErrAmbiguous:
		if e.Field == "device" {
			return http.StatusBadRequest
		}
		return http.StatusNotFound
	case admin.ErrConflict, admin.ErrExists:
		return http.StatusConflict
	case admin.ErrUnavailable:
		return http.StatusServiceUnavailable
	case admin.ErrForbidden:
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}
