package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/exception"
	"github.com/mamori-dev/mamori/server/store"
)

// activeExceptions returns every exception in force, cached for
// PolicyTTL like the policy (several servers may share one database).
// Expiry is checked again per device at each use (exception.For).
func (s *cache) activeExceptions(ctx context.Context) ([]store.Exception, error) {
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
func (s *cache) effectivePolicy(ctx context.Context, deviceID, group string, groupKnown bool) (*mamoriv1.Policy, error) {
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
	if policy.HasDeviceUsers(base, group, deviceID) {
		// The officer named users for this terminal alone: its policy
		// is its own (internal/policy.EffectiveForDevice).
		key.device = deviceID
	}
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
	p := policy.EffectiveForDevice(base, group, key.device, mine, now)
	s.eff[key] = p
	return p, nil
}

// effKey names one effective policy: the policy as loaded (a new load is
// a new pointer), the group, and the IDs of the exceptions folded in.
type effKey struct {
	base   *mamoriv1.Policy
	group  string
	ids    string
	device string // set when the policy names users for this device
}

// maxEffCache bounds the effective policies kept (device-specific
// exceptions make one entry per such device).
const maxEffCache = 4096

// CreateException approves an exception (例外措置). Officer, audited
// (admin.Service.CreateException).
func (s *AdminService) CreateException(ctx context.Context, req *mamoriv1.CreateExceptionRequest) (*mamoriv1.CreateExceptionResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	var expires time.Time
	if req.ExpiresAt != nil {
		if err := req.ExpiresAt.CheckValid(); err != nil {
			return nil, invalidArg("expires_at: %v", err)
		}
		expires = req.ExpiresAt.AsTime()
	}
	e, err := s.actions.CreateException(ctx, op, admin.ExceptionRequest{USB: req.Usb, User: req.User, Device: req.Device,
		Group: req.Group, Reason: req.Reason, ExpiresAt: expires})
	if err != nil {
		return nil, err
	}
	return &mamoriv1.CreateExceptionResponse{Exception: exception.Proto(e)}, nil
}

// ListExceptions lists exceptions, newest first. Helpdesk.
func (s *AdminService) ListExceptions(ctx context.Context, req *mamoriv1.ListExceptionsRequest) (*mamoriv1.ListExceptionsResponse, error) {
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

// RevokeException ends an exception early. Officer, audited
// (admin.Service.RevokeException).
func (s *AdminService) RevokeException(ctx context.Context, req *mamoriv1.RevokeExceptionRequest) (*mamoriv1.RevokeExceptionResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.actions.RevokeException(ctx, op, req.Id, req.Reason)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.RevokeExceptionResponse{Exception: exception.Proto(e)}, nil
}
