package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/admin"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/store"
)

// access says who may call a method. Every method the server registers has
// an entry; a method without one is refused (fail closed), and a test checks
// that the table covers both services.
type access struct {
	// enroll: no credential at the transport; the token is in the body.
	enroll bool
	// device: a verified device certificate of a device that is not revoked.
	device bool
	// checkedInTx: the handler's own transaction re-checks revocation and
	// the certificate serial atomically with its writes (Report does, in
	// IngestReports), so the interceptor skips its read of the device row.
	// That read would cost one query per report, and a check outside the
	// transaction could race a revocation anyway.
	checkedInTx bool
	// role: an operator token of at least this role.
	role auth.Role
	// bootstrap: the first admin's single-use token may call it.
	bootstrap bool
	// open: anyone who completed the TLS handshake; only for the
	// standard health check, which reveals nothing (load balancers, and
	// mamori-loadgen's no-op baseline).
	open bool
}

var methodAccess = map[string]access{
	mamoriv1.AgentService_Enroll_FullMethodName: {enroll: true},
	healthpb.Health_Check_FullMethodName:        {open: true},
	healthpb.Health_List_FullMethodName:         {open: true},
	mamoriv1.AgentService_Report_FullMethodName: {device: true, checkedInTx: true},
	// Renew's store transaction checks revocation and the serial (current
	// or renewed-from) with its write.
	mamoriv1.AgentService_Renew_FullMethodName: {device: true, checkedInTx: true},

	mamoriv1.AdminService_ListDevices_FullMethodName:           {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_GetDevice_FullMethodName:             {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_FleetSummary_FullMethodName:          {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_ListEvents_FullMethodName:            {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_GetPolicy_FullMethodName:             {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_CreateEnrollmentToken_FullMethodName: {role: auth.RoleOfficer},
	mamoriv1.AdminService_RevokeDevice_FullMethodName:          {role: auth.RoleOfficer},
	mamoriv1.AdminService_SetDeviceGroup_FullMethodName:        {role: auth.RoleOfficer},
	mamoriv1.AdminService_ApproveReenrollment_FullMethodName:   {role: auth.RoleOfficer},
	mamoriv1.AdminService_ApproveEK_FullMethodName:             {role: auth.RoleOfficer},
	mamoriv1.AdminService_ListApprovedEKs_FullMethodName:       {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_SetPolicy_FullMethodName:             {role: auth.RoleOfficer},
	mamoriv1.AdminService_ListAudit_FullMethodName:             {role: auth.RoleOfficer},
	mamoriv1.AdminService_EnrollMFAUser_FullMethodName:         {role: auth.RoleOfficer},
	mamoriv1.AdminService_ResetMFAUser_FullMethodName:          {role: auth.RoleOfficer},
	mamoriv1.AdminService_ImportMFASeeds_FullMethodName:        {role: auth.RoleOfficer},
	mamoriv1.AdminService_UnlockMFAUser_FullMethodName:         {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_IssueMFATempCode_FullMethodName:      {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_ListMFAUsers_FullMethodName:          {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_CreateException_FullMethodName:       {role: auth.RoleOfficer},
	mamoriv1.AdminService_ListExceptions_FullMethodName:        {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_RevokeException_FullMethodName:       {role: auth.RoleOfficer},
	mamoriv1.AdminService_ImportLedger_FullMethodName:          {role: auth.RoleOfficer},
	mamoriv1.AdminService_ListLedger_FullMethodName:            {role: auth.RoleHelpdesk},
	// Everyone manages their own API tokens; an admin anyone's (checked
	// in server/admin optokens.go). The bootstrap token may call only
	// CreateOperatorToken.
	mamoriv1.AdminService_CreateOperatorToken_FullMethodName: {role: auth.RoleHelpdesk, bootstrap: true},
	mamoriv1.AdminService_ListOperatorTokens_FullMethodName:  {role: auth.RoleHelpdesk},
	mamoriv1.AdminService_RevokeOperatorToken_FullMethodName: {role: auth.RoleHelpdesk},
}

// Surface is which listener a call came in on. Operator tokens are
// accepted only on the admin listener; the agents' listener (enrolment,
// reports, renewal: the port every terminal reaches) refuses every
// AdminService call, and the admin listener every AgentService call
// (docs/security.md, "Where operator tokens are accepted").
type Surface int

const (
	// SurfaceAgents is the agents' port (--listen).
	SurfaceAgents Surface = iota + 1
	// SurfaceAdmin is the admin API's port (--admin-listen).
	SurfaceAdmin
	// SurfaceBoth serves both on one listener: only for tests of the
	// handlers that predate the split.
	SurfaceBoth
)

// deviceIdentity is who an agent call speaks for, from its certificate.
type deviceIdentity struct {
	ID     string
	Serial string
	// KeyAttested: the certificate says the key was attested in a TPM.
	KeyAttested bool
	// Cert is the verified certificate the call came with.
	Cert *x509.Certificate
}

// operatorIdentity is who an admin call speaks for, from its token.
type operatorIdentity struct {
	ID    string
	Name  string
	Role  auth.Role
	Token store.OperatorToken
}

type deviceKey struct{}
type operatorKey struct{}

func deviceFrom(ctx context.Context) (deviceIdentity, bool) {
	d, ok := ctx.Value(deviceKey{}).(deviceIdentity)
	return d, ok
}

func operatorFrom(ctx context.Context) (operatorIdentity, bool) {
	o, ok := ctx.Value(operatorKey{}).(operatorIdentity)
	return o, ok
}

// authenticate is the one place that decides whether a call may proceed.
func (s *Server) authenticate(ctx context.Context, method string, surface Surface) (context.Context, error) {
	acc, ok := methodAccess[method]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "method not allowed")
	}
	agentCall := acc.enroll || acc.device
	switch {
	case surface == SurfaceAgents && !agentCall && !acc.open:
		// No token is even looked at here. The open health check is
		// served on both ports (load balancers in front of the agents'
		// port; mamori-loadgen's no-op baseline).
		return nil, status.Error(codes.PermissionDenied,
			"this is the agents' port: the admin API and operator tokens are served on the admin port (mamori-server --admin-listen, default :8445)")
	case surface == SurfaceAdmin && agentCall:
		return nil, status.Error(codes.PermissionDenied, "this is the admin port: agents use the agents' port (mamori-server --listen)")
	case agentCall && len(metadata.ValueFromIncomingContext(ctx, "authorization")) > 0:
		// An operator token has no business on an agent call.
		return nil, status.Error(codes.Unauthenticated, "operator tokens are not accepted on agent calls")
	}
	switch {
	case acc.enroll, acc.open:
		return ctx, nil
	case acc.device:
		id, err := s.authDevice(ctx, !acc.checkedInTx)
		if err != nil {
			return nil, err
		}
		return context.WithValue(ctx, deviceKey{}, id), nil
	default:
		op, err := s.authOperator(ctx)
		if err != nil {
			return nil, err
		}
		if op.Token.SingleUse && !acc.bootstrap {
			return nil, status.Error(codes.PermissionDenied,
				"this is the first admin's bootstrap token: it only makes your own first token, once (mamorictl api-token create --name NAME); use that one")
		}
		if !op.Role.Allows(acc.role) {
			return nil, status.Errorf(codes.PermissionDenied,
				"operator %s has role %s; this needs role %s", op.Name, op.Role, acc.role)
		}
		return context.WithValue(ctx, operatorKey{}, op), nil
	}
}

func (s *Server) authDevice(ctx context.Context, checkStore bool) (deviceIdentity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return deviceIdentity{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return deviceIdentity{}, status.Error(codes.Unauthenticated,
			"a device certificate is required: enrol the agent first (mamori-agent enroll)")
	}
	leaf := ti.State.VerifiedChains[0][0]
	id, err := pki.DeviceIDFromCert(leaf)
	if err != nil {
		return deviceIdentity{}, status.Errorf(codes.Unauthenticated, "not a device certificate: %v", err)
	}
	// The TLS handshake checks validity against the same clock; this is
	// the answer a person reads if a certificate slips past it.
	if now := s.now(); now.After(leaf.NotAfter) {
		return deviceIdentity{}, status.Errorf(codes.Unauthenticated,
			"device certificate expired at %s: this terminal needs a new enrolment token (mamori-agent enroll)",
			leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !checkStore {
		return deviceIdentity{ID: id, Serial: pki.SerialHex(leaf), KeyAttested: pki.KeyAttested(leaf), Cert: leaf}, nil
	}
	serial, revokedAt, err := s.store.DeviceCredential(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return deviceIdentity{}, status.Error(codes.Unauthenticated, "unknown device: enrol again")
	case err != nil:
		return deviceIdentity{}, err
	case !revokedAt.IsZero():
		return deviceIdentity{}, status.Error(codes.PermissionDenied, "device revoked")
	case serial != pki.SerialHex(leaf):
		return deviceIdentity{}, status.Error(codes.Unauthenticated,
			"certificate superseded by a newer enrolment of this device")
	}
	return deviceIdentity{ID: id, Serial: serial, KeyAttested: pki.KeyAttested(leaf), Cert: leaf}, nil
}

func (s *Server) authOperator(ctx context.Context) (operatorIdentity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return operatorIdentity{}, status.Error(codes.Unauthenticated,
			"an operator token is required (authorization: Bearer mmo_…)")
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || !auth.WellFormed(tok, auth.OperatorTokenPrefix) {
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "malformed operator token")
	}
	op, t, err := s.store.OperatorByTokenHash(ctx, auth.HashToken(tok))
	now := s.now()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "operator token refused")
	case err != nil:
		return operatorIdentity{}, err
	case !op.DisabledAt.IsZero():
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "operator disabled")
	case !t.RevokedAt.IsZero() && t.SingleUse:
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "the bootstrap token was used already: use the token it made (mamorictl api-token list)")
	case !t.RevokedAt.IsZero():
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "operator token revoked: ask an admin for a new one (mamorictl api-token create)")
	case t.ExpiresAt.IsZero() || !now.Before(t.ExpiresAt):
		return operatorIdentity{}, status.Error(codes.Unauthenticated, "operator token expired: ask an admin for a new one (mamorictl api-token create)")
	}
	role, err := auth.ParseRole(op.Role)
	if err != nil {
		return operatorIdentity{}, fmt.Errorf("operator %s: %w", op.ID, err)
	}
	// The last use, for the list (at most one write a minute); a
	// single-use token is spent by the call it allows, not here.
	if !t.SingleUse && now.Sub(t.LastUsedAt) >= time.Minute {
		if err := s.store.UseOperatorToken(ctx, t.ID, now); errors.Is(err, store.ErrNotFound) {
			return operatorIdentity{}, status.Error(codes.Unauthenticated, "operator token revoked")
		} else if err != nil {
			return operatorIdentity{}, err
		}
	}
	return operatorIdentity{ID: op.ID, Name: op.Name, Role: role, Token: t}, nil
}

// UnaryInterceptor authenticates every call, recovers from panics, turns
// domain errors into gRPC status codes, and logs the outcome. It is the
// only interceptor: one place to read to know what guards a call.
func (s *Server) UnaryInterceptor(surface Surface) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return s.intercept(ctx, req, info, handler, surface)
	}
}

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, surface Surface) (resp any, err error) {
	start := time.Now()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", r)
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
		code := status.Code(err)
		s.metrics.observe(info.FullMethod, time.Since(start), code)
		if code == codes.ResourceExhausted {
			// Admission refusals come by the thousand in a storm;
			// admission.go logs a summary instead.
			s.log.DebugContext(ctx, "rpc refused", "method", info.FullMethod, "code", code.String(), "error", err)
		} else if code != codes.OK {
			s.log.InfoContext(ctx, "rpc refused", "method", info.FullMethod, "code", code.String(),
				"error", err, "took", time.Since(start))
		}
	}()
	ctx, err = s.authenticate(ctx, info.FullMethod, surface)
	if err != nil {
		return nil, s.toStatus(ctx, info.FullMethod, err)
	}
	resp, err = handler(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, info.FullMethod, err)
	}
	return resp, nil
}

// StreamInterceptor refuses streams: no service has one, and a future one
// must not slip past authentication.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return status.Error(codes.Unimplemented, "streams are not served")
}

// invalidArgError marks a request that failed validation.
type invalidArgError struct{ msg string }

func (e *invalidArgError) Error() string { return e.msg }

// GRPCStatus gives the code to checks called outside the interceptor
// (validateReport in tests).
func (e *invalidArgError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.msg)
}

func invalidArg(format string, args ...any) error {
	return &invalidArgError{msg: fmt.Sprintf(format, args...)}
}

// toStatus maps errors to gRPC status codes: the one place that does, for
// the agent service and the admin service alike. Internal details are
// logged, never sent: the caller gets a message that is safe to show.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ia *invalidArgError
	var refused *admin.Error
	switch {
	case errors.As(err, &ia):
		return status.Error(codes.InvalidArgument, ia.msg)
	case errors.As(err, &refused) && refused.Msg != "":
		// An operator action refused (server/admin), with a message for
		// the operator; a bare store refusal falls through to the cases
		// below, which word it.
		return status.Error(adminCode(refused.Kind), refused.Msg)
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrTokenExpired), errors.Is(err, store.ErrTokenUsedUp):
		// The agent learns only that the token was refused; the log says why.
		return status.Error(codes.PermissionDenied, "enrolment token refused")
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, store.ErrAmbiguous):
		return status.Error(codes.FailedPrecondition, "more than one device has that hostname: use the device ID")
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, "conflict: the record changed since it was read")
	case errors.Is(err, store.ErrDeviceRevoked):
		return status.Error(codes.PermissionDenied, "device revoked")
	case errors.Is(err, store.ErrWrongDevice):
		return status.Error(codes.PermissionDenied, "the report names another machine than this device's certificate")
	case errors.Is(err, store.ErrCertSuperseded):
		return status.Error(codes.Unauthenticated, "certificate superseded by a newer enrolment of this device")
	case storeUnreachable(err):
		// Transient: an agent retries (or tries its next server) instead
		// of treating the refusal as final.
		s.log.WarnContext(ctx, "database unreachable", "method", method, "error", err)
		return status.Error(codes.Unavailable, "the server's database is unreachable; retry shortly")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	s.log.ErrorContext(ctx, "internal error", "method", method, "error", err)
	return status.Error(codes.Internal, "internal error (see the server log)")
}

// adminCode is the status code of a kind of server/admin refusal.
func adminCode(kind error) codes.Code {
	switch kind {
	case admin.ErrInvalid:
		return codes.InvalidArgument
	case admin.ErrNotFound:
		return codes.NotFound
	case admin.ErrAmbiguous, admin.ErrUnavailable:
		return codes.FailedPrecondition
	case admin.ErrConflict:
		return codes.Aborted
	case admin.ErrExists:
		return codes.AlreadyExists
	case admin.ErrForbidden:
		return codes.PermissionDenied
	}
	return codes.Internal
}

// storeUnreachable reports whether err says the database could not be
// reached or the connection to it broke (PostgreSQL restarting, a network
// fault), as opposed to a query that failed.
func storeUnreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) ||
		transientSQLState(err)
}

// transientSQLState reports whether the database answered with an SQL
// standard code that means "not now" rather than "no": class 08
// (connection exception), 57P01–57P03 (the server shutting down, crashed
// or starting: PostgreSQL ends every session with 57P01 when its
// postmaster dies) and 53300 (too many connections). The drivers that
// speak SQLSTATE (pgx's PgError) expose it as SQLState().
func transientSQLState(err error) bool {
	var se interface{ SQLState() string }
	if !errors.As(err, &se) {
		return false
	}
	switch c := se.SQLState(); {
	case strings.HasPrefix(c, "08"), c == "57P01", c == "57P02", c == "57P03", c == "53300":
		return true
	}
	return false
}
