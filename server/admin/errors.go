package admin

import (
	"errors"
	"fmt"

	"github.com/mamori-dev/mamori/server/store"
)

// Kinds of refusal. An action's error is an *Error of one of these kinds,
// or an error of the store or the system (which the front ends treat as
// internal). errors.Is(err, Kind) tells the kind.
var (
	// ErrInvalid: the request is not acceptable as it stands.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: what the request names does not exist.
	ErrNotFound = store.ErrNotFound
	// ErrAmbiguous: a hostname names more than one device.
	ErrAmbiguous = store.ErrAmbiguous
	// ErrConflict: the record changed since it was read (a policy version,
	// an exception revoked meanwhile, an import raced by another).
	ErrConflict = store.ErrConflict
	// ErrExists: it exists already (an enrolled MFA user).
	ErrExists = errors.New("already exists")
	// ErrUnavailable: this server cannot do it as configured (no MFA key).
	ErrUnavailable = errors.New("not available on this server")
	// ErrForbidden: the operator may not do this: another operator's API
	// token without the admin role; a bootstrap token used for anything
	// but its exchange; a privileged user's temporary code without the
	// officer role.
	ErrForbidden = errors.New("not allowed for this operator")

	// ErrLimit is the Cause of an ErrInvalid refusal for a field over its
	// length limit or not UTF-8 (limits.go), as opposed to a value that
	// fits but is wrong.
	ErrLimit = errors.New("over a limit or not UTF-8")
)

// Error is a refused action.
type Error struct {
	// Action is the audit action refused ("exception.create").
	Action string
	// Kind is one of the Err kinds above.
	Kind error
	// Field names the request field at fault, when one is ("reason",
	// "device"); "" when the refusal is about the whole request.
	Field string
	// Msg says why, in English, safe to show (no secrets, hostile values
	// cut short). "" for a bare store refusal: the front end says it.
	Msg string
	// Cause is the underlying error when a front end may show more of it
	// (*ledger.Errors: the rows at fault).
	Cause error
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return e.Kind.Error()
}

// Unwrap gives the kind and the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// refused returns an *Error of kind.
func refused(action string, kind error, field, format string, args ...any) *Error {
	return &Error{Action: action, Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// invalid is an ErrInvalid refusal.
func invalid(action, field, format string, args ...any) *Error {
	return refused(action, ErrInvalid, field, format, args...)
}

// storeRefusal makes a store's refusal (not found, ambiguous, conflict)
// an *Error of action naming field; other errors pass unchanged.
func storeRefusal(action, field string, err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	for _, k := range []error{store.ErrNotFound, store.ErrAmbiguous, store.ErrConflict} {
		if errors.Is(err, k) {
			return &Error{Action: action, Kind: k, Field: field}
		}
	}
	return err
}
