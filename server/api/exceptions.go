package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/exception"
	"github.com/mamori-dev/mamori/server/store"
)

// activeExceptions returns every exception in force, cached for
// PolicyTTL like the policy (several servers may share one database).
// Expiry is checked again per device at each use (exception.For).
func (s *Server) activeExceptions(ctx context.Context) ([]store.Exception, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.excsOK && now.Sub(s.excsAt) < s.policyTTL {
		return s.excs, nil
	}
	es, err := s.store.ListExceptions(ctx, store.ExceptionFilter{ActiveAt: s.now(), Limit: exception.MaxActive})
	if err != nil {
		return nil, fmt.Errorf("load exceptions: %w", err)
	}
	s.excs, s.excsAt, s.excsOK = es, now, true
	return es, nil
}

// effectivePolicy is one device's policy: the base, its group's override
// and its exceptions in force. The device's group is read only when it
// matters (group overrides or group exceptions exist) and the caller does
// not know it.
func (s *Server) effectivePolicy(ctx context.Context, deviceID, group string, groupKnown bool) (*mamoriv1.Policy, error) {
	base, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	excs, err := s.activeExceptions(ctx)
	if err != nil {
		return nil, err
	}
	if !groupKnown && exception.NeedsGroup(base, excs) {
		if group, err = s.store.DeviceGroup(ctx, deviceID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	now := s.now()
	mine := exception.For(excs, deviceID, group, now)
	// Most devices share their effective policy with the rest of their
	// group: computing it (clone, merge, digest) costs ~10 µs, so it is
	// kept per (policy load, group, exceptions). Exceptions are immutable
	// but for revocation, which removes them from the active list.
	ids := make([]string, len(mine))
	for i, e := range mine {
		ids[i] = e.ID
	}
	key := effKey{base: base, group: group, ids: strings.Join(ids, ",")}
	s.effMu.Lock()
	defer s.effMu.Unlock()
	if p, ok := s.eff[key]; ok {
		return p, nil
	}
	if len(s.eff) >= maxEffCache {
		clear(s.eff)
	}
	if s.eff == nil {
		s.eff = map[effKey]*mamoriv1.Policy{}
	}
	p := policy.Effective(base, group, mine, now)
	s.eff[key] = p
	return p, nil
}

// effKey names one effective policy: the policy as loaded (a new load is
// a new pointer), the group, and the IDs of the exceptions folded in.
type effKey struct {
	base  *mamoriv1.Policy
	group string
	ids   string
}

// maxEffCache bounds the effective policies kept (device-specific
// exceptions make one entry per such device).
const maxEffCache = 4096

// CreateException approves an exception (例外措置). Officer, audited.
func (s *Server) CreateException(ctx context.Context, req *mamoriv1.CreateExceptionRequest) (*mamoriv1.CreateExceptionResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"usb", req.Usb}, {"user", req.User}, {"device", req.Device}, {"group", req.Group}} {
		if err := checkString(f.name, f.v, MaxShortString); err != nil {
			return nil, err
		}
	}
	if err := checkString("reason", req.Reason, exception.MaxReasonLength); err != nil {
		return nil, err
	}
	if req.Group != "" {
		if err := CheckGroup(req.Group); err != nil {
			return nil, err
		}
	}
	if req.ExpiresAt != nil {
		if err := req.ExpiresAt.CheckValid(); err != nil {
			return nil, invalidArg("expires_at: %v", err)
		}
	}
	var deviceID string
	if d := strings.TrimSpace(req.Device); d != "" {
		dev, err := s.store.FindDevice(ctx, d)
		if err != nil {
			return nil, err
		}
		deviceID = dev.ID
	}
	var expires time.Time
	if req.ExpiresAt != nil {
		expires = req.ExpiresAt.AsTime()
	}
	e, err := exception.New(exception.Request{USB: req.Usb, User: req.User, DeviceID: deviceID, Group: req.Group,
		Reason: req.Reason, ExpiresAt: expires, Actor: op.ID}, s.now())
	if err != nil {
		return nil, invalidArg("%v", err)
	}
	err = s.audited(ctx, op.ID, "exception.create", e.ID, AuditDetail(e), func(ctx context.Context) error {
		return s.store.CreateException(ctx, e)
	})
	s.forgetPolicy()
	if err != nil {
		return nil, err
	}
	return &mamoriv1.CreateExceptionResponse{Exception: exception.Proto(e)}, nil
}

// AuditDetail is the audit line of an approved exception.
func AuditDetail(e store.Exception) string {
	return fmt.Sprintf("usb=%s user=%q device=%q group=%q expires=%s reason=%q", exception.USB(e), e.User, e.DeviceID, e.Group,
		e.ExpiresAt.UTC().Format(time.RFC3339), e.Reason)
}

// ListExceptions lists exceptions, newest first. Helpdesk.
func (s *Server) ListExceptions(ctx context.Context, req *mamoriv1.ListExceptionsRequest) (*mamoriv1.ListExceptionsResponse, error) {
	if err := checkString("device", req.Device, MaxShortString); err != nil {
		return nil, err
	}
	f := store.ExceptionFilter{Limit: maxPageSize}
	if d := strings.TrimSpace(req.Device); d != "" {
		dev, err := s.store.FindDevice(ctx, d)
		if err != nil {
			return nil, err
		}
		f.DeviceID, f.Group = dev.ID, dev.Group
	}
	if !req.All {
		f.ActiveAt = s.now()
	}
	es, err := s.store.ListExceptions(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.ListExceptionsResponse{}
	for _, e := range es {
		resp.Exceptions = append(resp.Exceptions, exception.Proto(e))
	}
	return resp, nil
}

// RevokeException ends an exception early. Officer, audited.
func (s *Server) RevokeException(ctx context.Context, req *mamoriv1.RevokeExceptionRequest) (*mamoriv1.RevokeExceptionResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	if req.Id == "" {
		return nil, invalidArg("id is required")
	}
	if err := checkString("id", req.Id, MaxShortString); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return nil, invalidArg("a reason is required: it goes into the audit log")
	}
	if err := checkString("reason", req.Reason, exception.MaxReasonLength); err != nil {
		return nil, err
	}
	var e store.Exception
	err = s.audited(ctx, op.ID, "exception.revoke", req.Id, req.Reason, func(ctx context.Context) error {
		var err error
		e, err = s.store.RevokeException(ctx, req.Id, op.ID, req.Reason, s.now())
		return err
	})
	s.forgetPolicy()
	if err != nil {
		return nil, err
	}
	return &mamoriv1.RevokeExceptionResponse{Exception: exception.Proto(e)}, nil
}
