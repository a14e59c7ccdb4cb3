package admin

import (
	"strings"
	"unicode/utf8"

	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/wire"
	"github.com/mamori-dev/mamori/server/exception"
)

// Input limits of the operator actions, in one place for both front ends
// (before, the console had its own literal 256 next to the API's
// MaxShortString; the values were the same).
const (
	// MaxShortString bounds names, IDs, hostnames, USB IDs, groups.
	MaxShortString = wire.MaxShortString
	// MaxReasonLength bounds a reason or note that goes into the audit log.
	MaxReasonLength = 512
	// MaxExceptionReason bounds an exception's reason (kept with it).
	MaxExceptionReason = exception.MaxReasonLength
)

// CheckString refuses v when it is longer than max bytes or not UTF-8.
// The front ends use it on what they read before any action (a search,
// a device looked up by name), the actions on every field.
func CheckString(action, field, v string, max int) error {
	var e *Error
	switch {
	case len(v) > max:
		e = invalid(action, field, "%s is %d bytes; at most %d", field, len(v), max)
	case !utf8.ValidString(v):
		e = invalid(action, field, "%s is not valid UTF-8", field)
	default:
		return nil
	}
	e.Cause = ErrLimit
	return e
}

// checkReason requires a reason for the audit log and bounds it.
func checkReason(action, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return invalid(action, "reason", "a reason is required: it goes into the audit log")
	}
	return CheckString(action, "reason", reason, MaxReasonLength)
}

// CheckGroup validates a device group (所属) name: empty means "no
// group"; anything else follows policy.CheckGroupName (at most 64
// characters, no control or format characters such as bidi overrides, no
// leading or trailing space), the rule group overrides in the policy obey.
func CheckGroup(action, g string) error {
	if g == "" {
		return nil
	}
	if err := CheckString(action, "group", g, 4*policy.MaxGroupNameLength); err != nil {
		return err
	}
	if err := policy.CheckGroupName(g); err != nil {
		return invalid(action, "group", "%v", err)
	}
	return nil
}

// truncate keeps hostile values short in messages.
func truncate(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
