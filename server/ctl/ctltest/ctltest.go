// Package ctltest runs a fake AdminService for mamorictl's tests: a real
// gRPC server with real TLS (a CA from internal/pki) on 127.0.0.1:0, that
// checks the operator token, records every request and serves canned data.
package ctltest

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Token is the operator token the fake accepts unless Fake.Token is set.
const Token = "mmo_op_test-operator-token-0123456789"

// Fake is the fake AdminService. Set its fields before the first call;
// it is safe for concurrent use afterwards.
type Fake struct {
	mamoriv1.UnimplementedAdminServiceServer

	// Token is the accepted operator token.
	Token string
	// Now is the fake's clock (token expiry, revocation time).
	Now time.Time
	// Devices, Events (newest first) and Policy are the served data.
	Devices []*mamoriv1.Device
	Events  []*mamoriv1.StoredEvent
	Policy  *mamoriv1.Policy
	// Fleet is the FleetSummary answer.
	Fleet *mamoriv1.FleetSummaryResponse
	// MFAUsers is the ListMFAUsers answer.
	MFAUsers []*mamoriv1.MFAUserInfo
	// Exceptions and Ledger serve the exception and ledger commands
	// (exceptions.go).
	Exceptions []*mamoriv1.Exception
	Ledger     *mamoriv1.ListLedgerResponse
	// CAFingerprint is returned by CreateEnrollmentToken (Start sets it).
	CAFingerprint string
	// Errs makes a method ("ListDevices", …) fail with the given error.
	Errs map[string]error
	// Delay makes every call wait this long first (deadline tests).
	Delay time.Duration

	mu       sync.Mutex
	requests []Request
}

// Request is one recorded call.
type Request struct {
	Method string
	Msg    proto.Message
	// Authorization is the metadata value the call carried.
	Authorization string
	// TLSVersion is the negotiated TLS version.
	TLSVersion uint16
}

// Requests returns the calls so far, in order.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// Server is a running fake.
type Server struct {
	Fake *Fake
	// Addr is 127.0.0.1:port.
	Addr string
	// CAFile is the CA certificate (PEM) to pass as --ca-file.
	CAFile string
	// CAFingerprint is the CA's SHA-256 for --ca-fingerprint.
	CAFingerprint string
}

// Start serves f until the test ends. The served chain includes the CA, so
// --ca-fingerprint (pinning) works as well as --ca-file.
func Start(t testing.TB, f *Fake) *Server {
	t.Helper()
	if f.Token == "" {
		f.Token = Token
	}
	if f.Now.IsZero() {
		f.Now = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	}
	dir := t.TempDir()
	ca, _, err := pki.LoadOrCreateCA(dir, f.Now)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	// Real time for the server certificate: the TLS handshake checks it
	// against the real clock.
	cert, err := ca.ServerCertificate(dir, []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	f.CAFingerprint = ca.Fingerprint()
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(cert, ca.Pool()))),
		grpc.UnaryInterceptor(f.intercept),
	)
	mamoriv1.RegisterAdminServiceServer(srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return &Server{Fake: f, Addr: lis.Addr().String(), CAFile: dir + "/ca.pem", CAFingerprint: ca.Fingerprint()}
}

// intercept records the call, checks the bearer token, and applies Delay
// and Errs.
func (f *Fake) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[len("/mamori.v1.AdminService/"):]
	md, _ := metadata.FromIncomingContext(ctx)
	r := Request{Method: method, Msg: proto.Clone(req.(proto.Message))}
	if v := md.Get("authorization"); len(v) == 1 {
		r.Authorization = v[0]
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			r.TLSVersion = ti.State.Version
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.mu.Unlock()
	if r.Authorization != "Bearer "+f.Token {
		return nil, status.Error(codes.Unauthenticated, "operator token refused")
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if err := f.Errs[method]; err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return int(n)
}

// ListDevices pages through Devices by index.
func (f *Fake) ListDevices(_ context.Context, req *mamoriv1.ListDevicesRequest) (*mamoriv1.ListDevicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var match []*mamoriv1.Device
	for _, d := range f.Devices {
		if req.Compliance == 0 || d.Compliance == req.Compliance {
			match = append(match, d)
		}
	}
	start := 0
	if req.PageToken != "" {
		n, err := strconv.Atoi(req.PageToken)
		if err != nil || n < 0 || n > len(match) {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this server issued")
		}
		start = n
	}
	end := min(start+pageSize(req.PageSize), len(match))
	resp := &mamoriv1.ListDevicesResponse{Devices: match[start:end]}
	if end < len(match) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// GetDevice finds a device by ID or hostname.
func (f *Fake) GetDevice(_ context.Context, req *mamoriv1.GetDeviceRequest) (*mamoriv1.GetDeviceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.Devices {
		if d.Id == req.IdOrHostname || d.GetFacts().GetHostname() == req.IdOrHostname {
			resp := &mamoriv1.GetDeviceResponse{Device: d}
			for _, e := range f.Events {
				if e.DeviceId == d.Id && len(resp.RecentEvents) < pageSize(req.RecentEvents) {
					resp.RecentEvents = append(resp.RecentEvents, e)
				}
			}
			return resp, nil
		}
	}
	return nil, status.Error(codes.NotFound, "not found")
}

// FleetSummary returns Fleet.
func (f *Fake) FleetSummary(context.Context, *mamoriv1.FleetSummaryRequest) (*mamoriv1.FleetSummaryResponse, error) {
	if f.Fleet == nil {
		return nil, status.Error(codes.Internal, "no fleet in the fake")
	}
	return f.Fleet, nil
}

// ListEvents pages through Events by index.
func (f *Fake) ListEvents(_ context.Context, req *mamoriv1.ListEventsRequest) (*mamoriv1.ListEventsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var match []*mamoriv1.StoredEvent
	for _, e := range f.Events {
		if req.DeviceId == "" || e.DeviceId == req.DeviceId {
			match = append(match, e)
		}
	}
	start := 0
	if req.PageToken != "" {
		n, err := strconv.Atoi(req.PageToken)
		if err != nil || n < 0 || n > len(match) {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this server issued")
		}
		start = n
	}
	end := min(start+pageSize(req.PageSize), len(match))
	resp := &mamoriv1.ListEventsResponse{Events: match[start:end]}
	if end < len(match) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// EnrollmentToken is the secret CreateEnrollmentToken returns.
const EnrollmentToken = "mmo_enr_test-enrolment-token"

// CreateEnrollmentToken returns EnrollmentToken with the asked TTL and uses.
func (f *Fake) CreateEnrollmentToken(_ context.Context, req *mamoriv1.CreateEnrollmentTokenRequest) (*mamoriv1.CreateEnrollmentTokenResponse, error) {
	uses := max(req.Uses, 1)
	return &mamoriv1.CreateEnrollmentTokenResponse{
		Token: EnrollmentToken, TokenId: "0b7c6f1e-0000-4000-8000-000000000001",
		ExpiresAt: timestamppb.New(f.Now.Add(req.GetTtl().AsDuration())), Uses: uses,
		CaFingerprint: f.CAFingerprint,
	}, nil
}

// RevokeDevice marks a device revoked.
func (f *Fake) RevokeDevice(_ context.Context, req *mamoriv1.RevokeDeviceRequest) (*mamoriv1.RevokeDeviceResponse, error) {
	if req.Reason == "" {
		return nil, status.Error(codes.InvalidArgument, "a reason is required")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.Devices {
		if d.Id == req.DeviceId {
			d = proto.Clone(d).(*mamoriv1.Device)
			d.Compliance = mamoriv1.Compliance_COMPLIANCE_REVOKED
			d.RevokedAt = timestamppb.New(f.Now)
			f.Devices[i] = d
			return &mamoriv1.RevokeDeviceResponse{Device: d}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "not found")
}

// GetPolicy returns Policy.
func (f *Fake) GetPolicy(context.Context, *mamoriv1.GetPolicyRequest) (*mamoriv1.GetPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Policy == nil {
		return nil, errors.New("no policy in the fake")
	}
	return &mamoriv1.GetPolicyResponse{Policy: f.Policy}, nil
}

// SetPolicy replaces Policy when expected_version matches, as the server
// does: Aborted otherwise.
func (f *Fake) SetPolicy(_ context.Context, req *mamoriv1.SetPolicyRequest) (*mamoriv1.SetPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.ExpectedVersion != f.Policy.GetVersion() {
		return nil, status.Error(codes.Aborted, "conflict: the record changed since it was read")
	}
	p := proto.Clone(req.Policy).(*mamoriv1.Policy)
	p.Version = f.Policy.GetVersion() + 1
	f.Policy = p
	return &mamoriv1.SetPolicyResponse{Policy: p}, nil
}
