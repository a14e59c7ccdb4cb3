package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/exception"
	"github.com/mamori-dev/mamori/server/store"
)

// ExceptionStore is what the exception actions need.
type ExceptionStore interface {
	FindDevice(ctx context.Context, idOrHostname string) (store.Device, error)
	CreateException(ctx context.Context, e store.Exception) error
	RevokeException(ctx context.Context, id, by, reason string, at time.Time) (store.Exception, error)
}

// ExceptionRequest is an exception (例外措置) to approve.
type ExceptionRequest struct {
	USB, User string
	// Device is a device ID or hostname; Group a device group. One of the
	// two.
	Device, Group string
	Reason        string
	ExpiresAt     time.Time
}

// CreateException approves an exception; audited exception.create.
// Refusals: ErrInvalid, ErrNotFound or ErrAmbiguous (field "device").
func (s *Service) CreateException(ctx context.Context, op Operator, r ExceptionRequest) (store.Exception, error) {
	const action = "exception.create"
	for _, f := range []struct{ name, v string }{{"usb", r.USB}, {"user", r.User}, {"device", r.Device}, {"group", r.Group}} {
		if err := CheckString(action, f.name, f.v, MaxShortString); err != nil {
			return store.Exception{}, err
		}
	}
	if err := CheckString(action, "reason", r.Reason, MaxExceptionReason); err != nil {
		return store.Exception{}, err
	}
	if err := CheckGroup(action, r.Group); err != nil {
		return store.Exception{}, err
	}
	var deviceID string
	if d := strings.TrimSpace(r.Device); d != "" {
		dev, err := s.st.FindDevice(ctx, d)
		if err != nil {
			return store.Exception{}, storeRefusal(action, "device", err)
		}
		deviceID = dev.ID
	}
	e, err := exception.New(exception.Request{USB: r.USB, User: r.User, DeviceID: deviceID, Group: r.Group,
		Reason: r.Reason, ExpiresAt: r.ExpiresAt, Actor: op.ID}, s.now())
	if err != nil {
		return store.Exception{}, &Error{Action: action, Kind: ErrInvalid, Msg: err.Error(), Cause: err}
	}
	err = s.audited(ctx, op, action, e.ID, ExceptionAuditDetail(e), func(ctx context.Context) error {
		return s.st.CreateException(ctx, e)
	})
	s.changed(PolicyChanged)
	if err != nil {
		return store.Exception{}, err
	}
	return e, nil
}

// ExceptionAuditDetail is the audit line of an approved exception.
//
// The two front ends wrote it differently until they shared this package:
// AdminService quoted user, device, group and reason (%q), the console
// wrote them bare. Quoted is kept: a reason is free text, and bare it can
// carry " expires=…" or a line that reads like another field, so an
// auditor (or a script) could not tell where the reason ends. Nor does
// the console's record end in " (console)" any more (see Operator).
func ExceptionAuditDetail(e store.Exception) string {
	return fmt.Sprintf("usb=%s user=%q device=%q group=%q expires=%s reason=%q", exception.USB(e), e.User, e.DeviceID, e.Group,
		e.ExpiresAt.UTC().Format(time.RFC3339), e.Reason)
}

// RevokeException ends an exception early; audited exception.revoke with
// the reason. Refusals: ErrInvalid, ErrNotFound (no such exception),
// ErrConflict (already revoked).
func (s *Service) RevokeException(ctx context.Context, op Operator, id, reason string) (store.Exception, error) {
	const action = "exception.revoke"
	if id == "" {
		return store.Exception{}, invalid(action, "id", "id is required")
	}
	if err := CheckString(action, "id", id, MaxShortString); err != nil {
		return store.Exception{}, err
	}
	if strings.TrimSpace(reason) == "" {
		return store.Exception{}, invalid(action, "reason", "a reason is required: it goes into the audit log")
	}
	if err := CheckString(action, "reason", reason, MaxExceptionReason); err != nil {
		return store.Exception{}, err
	}
	var e store.Exception
	err := s.audited(ctx, op, action, id, reason, func(ctx context.Context) error {
		var err error
		e, err = s.st.RevokeException(ctx, id, op.ID, reason, s.now())
		return err
	})
	s.changed(PolicyChanged)
	if err != nil {
		return store.Exception{}, storeRefusal(action, "id", err)
	}
	return e, nil
}
