// Package exception holds the server's rules for exceptions (例外措置):
// what a valid request is, and which exceptions go into a device's
// effective policy. AdminService and the console both use it, so an
// exception approved either way is checked alike.
package exception

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Limits.
const (
	MinDuration     = time.Minute
	MaxDuration     = 90 * 24 * time.Hour
	MaxReasonLength = 512
	// MaxActive bounds the active exceptions the server folds into
	// effective policies (all devices together); more are refused.
	MaxActive = 10000
)

// Request is what an officer asks for. Exactly one of Device (a device ID
// the caller resolved) and Group.
type Request struct {
	USB       string
	User      string
	DeviceID  string
	Group     string
	Reason    string
	ExpiresAt time.Time
	Actor     string
}

// ErrInvalid marks a request an officer must correct.
var ErrInvalid = errors.New("invalid exception")

// New checks r and returns the exception to store, with a new ID.
func New(r Request, now time.Time) (store.Exception, error) {
	var errs []error
	vendor, product, serial, err := policy.ParseUSB(strings.TrimSpace(r.USB))
	if err != nil {
		errs = append(errs, err)
	}
	if err := policy.CheckUser(r.User); err != nil {
		errs = append(errs, err)
	}
	switch {
	case (r.DeviceID == "") == (r.Group == ""):
		errs = append(errs, errors.New("name either one terminal or one device group"))
	case r.Group != "":
		if err := policy.CheckGroupName(r.Group); err != nil {
			errs = append(errs, err)
		}
	}
	reason := strings.TrimSpace(r.Reason)
	switch {
	case reason == "":
		errs = append(errs, errors.New("a reason is required: it goes into the audit log"))
	case len(reason) > MaxReasonLength || !utf8.ValidString(reason):
		errs = append(errs, fmt.Errorf("the reason is longer than %d bytes", MaxReasonLength))
	case strings.ContainsFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }):
		errs = append(errs, errors.New("the reason contains a control character"))
	}
	switch d := r.ExpiresAt.Sub(now); {
	case r.ExpiresAt.IsZero():
		errs = append(errs, errors.New("an expiry is required"))
	case d < MinDuration:
		errs = append(errs, fmt.Errorf("the expiry must be at least %v ahead", MinDuration))
	case d > MaxDuration:
		errs = append(errs, fmt.Errorf("the expiry must be at most %d days ahead", int(MaxDuration/(24*time.Hour))))
	}
	if len(errs) > 0 {
		return store.Exception{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return store.Exception{
		ID: uuid.NewString(), Vendor: vendor, Product: product, Serial: serial, User: r.User,
		DeviceID: r.DeviceID, Group: r.Group, Reason: reason, CreatedBy: r.Actor,
		CreatedAt: now, ExpiresAt: r.ExpiresAt,
	}, nil
}

// USB is the exception's device as VENDOR:PRODUCT:SERIAL.
func USB(e store.Exception) string { return e.Vendor + ":" + e.Product + ":" + e.Serial }

// For returns the exceptions of all that apply to one device (its own and
// its group's) and are active at now, in the policy's form.
func For(all []store.Exception, deviceID, group string, now time.Time) []policy.Exception {
	var out []policy.Exception
	for _, e := range all {
		if !e.ActiveAt(now) || !(e.DeviceID == deviceID || (e.Group != "" && e.Group == group)) {
			continue
		}
		out = append(out, policy.Exception{ID: e.ID, Vendor: e.Vendor, Product: e.Product, Serial: e.Serial,
			User: e.User, Expires: e.ExpiresAt})
	}
	return out
}

// NeedsGroup reports whether a device's group matters for its effective
// policy: the policy has group overrides or an exception names a group.
func NeedsGroup(base *mamoriv1.Policy, all []store.Exception) bool {
	if len(base.GetGroups()) > 0 {
		return true
	}
	for _, e := range all {
		if e.Group != "" {
			return true
		}
	}
	return false
}

// Effective is the device's effective policy at now.
func Effective(base *mamoriv1.Policy, all []store.Exception, deviceID, group string, now time.Time) *mamoriv1.Policy {
	return policy.EffectiveForDevice(base, group, deviceID, For(all, deviceID, group, now), now)
}

// Proto is the wire form of an exception.
func Proto(e store.Exception) *mamoriv1.Exception {
	return &mamoriv1.Exception{
		Id: e.ID, Usb: USB(e), User: e.User, DeviceId: e.DeviceID, Group: e.Group, Reason: e.Reason,
		CreatedBy: e.CreatedBy, CreatedAt: ts(e.CreatedAt), ExpiresAt: ts(e.ExpiresAt), RevokedAt: ts(e.RevokedAt),
		RevokedBy: e.RevokedBy, RevokeReason: e.RevokeReason,
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
