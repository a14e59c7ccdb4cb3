package api

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

func (s *AdminService) operator(ctx context.Context) (operatorIdentity, error) {
	op, ok := operatorFrom(ctx)
	if !ok {
		return op, status.Error(codes.Unauthenticated, "no operator identity")
	}
	return op, nil
}

// adminOperator is the caller as server/admin's actions name it.
func (s *AdminService) adminOperator(ctx context.Context) (admin.Operator, error) {
	op, err := s.operator(ctx)
	return admin.Operator{ID: op.ID, Role: op.Role, Token: op.Token, Officer: op.Role.Allows(auth.RoleOfficer)}, err
}

// ListDevices lists devices, optionally by compliance state, in pages.
func (s *AdminService) ListDevices(ctx context.Context, req *mamoriv1.ListDevicesRequest) (*mamoriv1.ListDevicesResponse, error) {
	if _, ok := mamoriv1.Compliance_name[int32(req.Compliance)]; !ok {
		return nil, invalidArg("unknown compliance filter %d", req.Compliance)
	}
	if err := checkString("page_token", req.PageToken, MaxShortString); err != nil {
		return nil, err
	}
	if err := admin.CheckGroup("", req.Group); err != nil {
		return nil, err
	}
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	limit := pageSize(req.PageSize)
	devs, err := s.store.ListDevices(ctx, compliance.OfflineCut(p, now).Filter(store.DeviceFilter{
		Compliance: req.Compliance,
		AfterID:    req.PageToken,
		Group:      req.Group,
		Limit:      limit + 1,
	}))
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.ListDevicesResponse{}
	if len(devs) > limit {
		devs = devs[:limit]
		resp.NextPageToken = devs[limit-1].ID
	}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, deviceProto(d, p, now))
	}
	return resp, nil
}

// GetDevice returns one device by ID or hostname, with recent events.
func (s *AdminService) GetDevice(ctx context.Context, req *mamoriv1.GetDeviceRequest) (*mamoriv1.GetDeviceResponse, error) {
	key := strings.TrimSpace(req.IdOrHostname)
	if key == "" {
		return nil, invalidArg("a device ID or hostname is required")
	}
	if err := checkString("id_or_hostname", key, MaxShortString); err != nil {
		return nil, err
	}
	d, err := s.store.FindDevice(ctx, key)
	if err != nil {
		return nil, err
	}
	p, err := s.effectivePolicy(ctx, d.ID, d.Group, true)
	if err != nil {
		return nil, err
	}
	n := int(req.RecentEvents)
	if n <= 0 {
		n = defaultRecentEvts
	}
	n = min(n, maxPageSize)
	evs, err := s.store.ListEvents(ctx, store.EventFilter{DeviceID: d.ID, Limit: n})
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.GetDeviceResponse{Device: deviceProto(d, p, s.now())}
	for _, e := range evs {
		resp.RecentEvents = append(resp.RecentEvents, storedEventProto(e))
	}
	return resp, nil
}

// FleetSummary counts devices by compliance state.
func (s *AdminService) FleetSummary(ctx context.Context, _ *mamoriv1.FleetSummaryRequest) (*mamoriv1.FleetSummaryResponse, error) {
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	cut := compliance.OfflineCut(p, s.now())
	c, err := s.store.CountFleet(ctx, cut)
	if err != nil {
		return nil, err
	}
	groups, err := s.store.CountFleetByGroup(ctx, cut)
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.FleetSummaryResponse{
		Total: c.Total, Compliant: c.Compliant, Noncompliant: c.Noncompliant,
		Offline: c.Offline, NeverReported: c.NeverReported, Revoked: c.Revoked,
		PolicyVersion: p.Version,
	}
	for _, g := range groups {
		resp.Groups = append(resp.Groups, &mamoriv1.GroupSummary{
			Group: g.Group, Total: g.Total, Compliant: g.Compliant, Noncompliant: g.Noncompliant,
			Offline: g.Offline, NeverReported: g.NeverReported, Revoked: g.Revoked,
		})
	}
	return resp, nil
}

// ListEvents lists events, newest first, in pages.
func (s *AdminService) ListEvents(ctx context.Context, req *mamoriv1.ListEventsRequest) (*mamoriv1.ListEventsResponse, error) {
	var before int64
	if req.PageToken != "" {
		v, err := strconv.ParseInt(req.PageToken, 10, 64)
		if err != nil || v <= 0 {
			return nil, invalidArg("page_token is not one this server issued")
		}
		before = v
	}
	if err := checkString("device_id", req.DeviceId, MaxShortString); err != nil {
		return nil, err
	}
	limit := pageSize(req.PageSize)
	evs, err := s.store.ListEvents(ctx, store.EventFilter{DeviceID: req.DeviceId, BeforeSeq: before, Limit: limit + 1})
	if err != nil {
		return nil, err
	}
	resp := &mamoriv1.ListEventsResponse{}
	if len(evs) > limit {
		evs = evs[:limit]
		resp.NextPageToken = strconv.FormatInt(evs[limit-1].Seq, 10)
	}
	for _, e := range evs {
		resp.Events = append(resp.Events, storedEventProto(e))
	}
	return resp, nil
}

// CreateEnrollmentToken makes a token that enrols up to Uses devices until
// it expires (admin.Service.CreateToken). The token is in this answer
// only; the store keeps its hash.
func (s *AdminService) CreateEnrollmentToken(ctx context.Context, req *mamoriv1.CreateEnrollmentTokenRequest) (*mamoriv1.CreateEnrollmentTokenResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	var ttl time.Duration
	if req.Ttl != nil {
		if err := req.Ttl.CheckValid(); err != nil {
			return nil, invalidArg("ttl: %v", err)
		}
		ttl = req.Ttl.AsDuration()
	}
	secret, t, err := s.actions.CreateToken(ctx, op, admin.TokenRequest{TTL: ttl, Uses: int(req.Uses), Note: req.Note, Group: req.Group})
	if err != nil {
		return nil, err
	}
	return &mamoriv1.CreateEnrollmentTokenResponse{
		Token:         secret.Reveal(),
		TokenId:       t.ID,
		ExpiresAt:     timestamppb.New(t.ExpiresAt),
		Uses:          int32(t.Uses),
		CaFingerprint: s.ca.Fingerprint(),
		AgentPort:     s.agentPort(),
	}, nil
}

// RevokeDevice refuses the device's certificate from now on
// (admin.Service.RevokeDevice).
func (s *AdminService) RevokeDevice(ctx context.Context, req *mamoriv1.RevokeDeviceRequest) (*mamoriv1.RevokeDeviceResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	d, err := s.actions.RevokeDevice(ctx, op, req.DeviceId, req.Reason)
	if err != nil {
		return nil, err
	}
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.RevokeDeviceResponse{Device: deviceProto(d, p, s.now())}, nil
}

// GetPolicy returns the policy in force.
func (s *AdminService) GetPolicy(ctx context.Context, _ *mamoriv1.GetPolicyRequest) (*mamoriv1.GetPolicyResponse, error) {
	s.forgetPolicy() // an operator reads the database, not a cache
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.GetPolicyResponse{Policy: p}, nil
}

// SetPolicy stores a new version of the policy (admin.Service.SetPolicy).
// The caller names the version it edited, so two officers cannot
// overwrite each other unseen.
func (s *AdminService) SetPolicy(ctx context.Context, req *mamoriv1.SetPolicyRequest) (*mamoriv1.SetPolicyResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	p, err := s.actions.SetPolicy(ctx, op, req.Policy, req.ExpectedVersion, req.Reason)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.SetPolicyResponse{Policy: p}, nil
}

// SetDeviceGroup moves a device to a device group
// (admin.Service.SetDeviceGroup).
func (s *AdminService) SetDeviceGroup(ctx context.Context, req *mamoriv1.SetDeviceGroupRequest) (*mamoriv1.SetDeviceGroupResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	d, err := s.actions.SetDeviceGroup(ctx, op, req.Device, req.Group, req.Reason)
	if err != nil {
		return nil, err
	}
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.SetDeviceGroupResponse{Device: deviceProto(d, p, s.now())}, nil
}

// ApproveReenrollment confirms a device flagged as a possible clone
// (admin.Service.ApproveReenrollment).
func (s *AdminService) ApproveReenrollment(ctx context.Context, req *mamoriv1.ApproveReenrollmentRequest) (*mamoriv1.ApproveReenrollmentResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	d, old, err := s.actions.ApproveReenrollment(ctx, op, req.Device, req.Reason)
	if err != nil {
		return nil, err
	}
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.ApproveReenrollmentResponse{Device: deviceProto(d, p, s.now()), Replaced: deviceProto(old, p, s.now())}, nil
}

// ApproveEK puts a TPM endorsement key on the approved list
// (admin.Service.ApproveEK).
func (s *AdminService) ApproveEK(ctx context.Context, req *mamoriv1.ApproveEKRequest) (*mamoriv1.ApproveEKResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	added, err := s.actions.ApproveEK(ctx, op, req.EkFingerprint, req.Note)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.ApproveEKResponse{Added: added}, nil
}

// ListApprovedEKs lists the approved endorsement keys.
func (s *AdminService) ListApprovedEKs(ctx context.Context, _ *mamoriv1.ListApprovedEKsRequest) (*mamoriv1.ListApprovedEKsResponse, error) {
	eks, err := s.actions.ListApprovedEKs(ctx)
	if err != nil {
		return nil, err
	}
	out := &mamoriv1.ListApprovedEKsResponse{}
	for _, e := range eks {
		out.Eks = append(out.Eks, &mamoriv1.ApprovedEK{EkFingerprint: e.Fingerprint, ApprovedBy: e.ApprovedBy, ApprovedAt: ts(e.ApprovedAt), Note: e.Note})
	}
	return out, nil
}

// deviceProto is what operators see of a device: the stored record plus the
// state derived from the clock (OFFLINE) and policy.
func deviceProto(d store.Device, p *mamoriv1.Policy, now time.Time) *mamoriv1.Device {
	state, offlineSince := compliance.State(d, p, now)
	out := &mamoriv1.Device{
		Id:            d.ID,
		Facts:         d.Facts,
		Compliance:    state,
		Reasons:       d.Reasons,
		EnrolledAt:    ts(d.EnrolledAt),
		LastSeen:      ts(d.LastSeen),
		OfflineSince:  ts(offlineSince),
		Controls:      d.Controls,
		PolicyVersion: d.PolicyVersion,
		RevokedAt:     ts(d.RevokedAt),
		EkFingerprint: d.EKFingerprint,
		KeyAttested:   d.KeyAttested,
		Group:         d.Group,
		CloneOf:       d.CloneOf,
	}
	if d.Verdict == store.VerdictNoncompliant {
		out.FailingSince = ts(d.FailingSince)
	}
	sort.Slice(out.Controls, func(i, j int) bool {
		return out.Controls[i].GetStatus().GetControl() < out.Controls[j].GetStatus().GetControl()
	})
	return out
}

func storedEventProto(e store.StoredEvent) *mamoriv1.StoredEvent {
	return &mamoriv1.StoredEvent{DeviceId: e.DeviceID, Event: e.Event, ReceivedAt: ts(e.ReceivedAt)}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// CreateOperatorToken makes a named operator API token
// (admin.Service.CreateOperatorToken).
func (s *AdminService) CreateOperatorToken(ctx context.Context, req *mamoriv1.CreateOperatorTokenRequest) (*mamoriv1.CreateOperatorTokenResponse, error) {
	if err := checkString("name", req.Name, MaxShortString); err != nil {
		return nil, err
	}
	if err := checkString("operator", req.Operator, MaxShortString); err != nil {
		return nil, err
	}
	var ttl time.Duration
	if req.Ttl != nil {
		if err := req.Ttl.CheckValid(); err != nil {
			return nil, invalidArg("ttl: %v", err)
		}
		if ttl = req.Ttl.AsDuration(); ttl <= 0 {
			return nil, invalidArg("ttl must be positive")
		}
	}
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	t, tok, err := s.actions.CreateOperatorToken(ctx, op, admin.NewOperatorToken{For: req.Operator, Name: req.Name, TTL: ttl})
	if err != nil {
		return nil, err
	}
	return &mamoriv1.CreateOperatorTokenResponse{Token: tok.Reveal(), Info: operatorTokenProto(store.OperatorTokenInfo{OperatorToken: t})}, nil
}

// ListOperatorTokens lists operator API tokens, never the tokens.
func (s *AdminService) ListOperatorTokens(ctx context.Context, req *mamoriv1.ListOperatorTokensRequest) (*mamoriv1.ListOperatorTokensResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	l, err := s.actions.ListOperatorTokens(ctx, op, req.All)
	if err != nil {
		return nil, err
	}
	out := &mamoriv1.ListOperatorTokensResponse{}
	for _, t := range l {
		out.Tokens = append(out.Tokens, operatorTokenProto(t))
	}
	return out, nil
}

// RevokeOperatorToken revokes an operator API token by name.
func (s *AdminService) RevokeOperatorToken(ctx context.Context, req *mamoriv1.RevokeOperatorTokenRequest) (*mamoriv1.RevokeOperatorTokenResponse, error) {
	if err := checkString("name", req.Name, MaxShortString); err != nil {
		return nil, err
	}
	if err := checkString("operator", req.Operator, MaxShortString); err != nil {
		return nil, err
	}
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.actions.RevokeOperatorToken(ctx, op, req.Operator, req.Name)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.RevokeOperatorTokenResponse{Token: operatorTokenProto(store.OperatorTokenInfo{OperatorToken: t})}, nil
}

func operatorTokenProto(t store.OperatorTokenInfo) *mamoriv1.OperatorToken {
	return &mamoriv1.OperatorToken{Name: t.Name, OperatorId: t.OperatorID, OperatorName: t.OperatorName, CreatedAt: ts(t.CreatedAt),
		CreatedBy: t.CreatedBy, ExpiresAt: ts(t.ExpiresAt), RevokedAt: ts(t.RevokedAt), RevokedBy: t.RevokedBy,
		LastUsedAt: ts(t.LastUsedAt), Bootstrap: t.SingleUse}
}
