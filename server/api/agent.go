package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// Enroll exchanges an enrolment token and a CSR for a device certificate.
func (s *Server) Enroll(ctx context.Context, req *mamoriv1.EnrollRequest) (*mamoriv1.EnrollResponse, error) {
	if len(req.Token) > MaxTokenLength || !auth.WellFormed(req.Token, auth.EnrollmentTokenPrefix) {
		// Same answer as an unknown token: a prober learns nothing.
		return nil, status.Error(codes.PermissionDenied, "enrolment token refused")
	}
	if len(req.Csr) == 0 || len(req.Csr) > MaxCSRBytes {
		return nil, invalidArg("csr is missing or larger than %d bytes", MaxCSRBytes)
	}
	if _, err := x509.ParseCertificateRequest(req.Csr); err != nil {
		return nil, invalidArg("csr: %v", err)
	}
	if err := validateFacts(req.Facts, true); err != nil {
		return nil, err
	}
	now := s.now()
	res, err := s.store.Enroll(ctx, store.EnrollParams{
		TokenHash:   auth.HashToken(req.Token),
		Now:         now,
		Facts:       req.Facts,
		NewDeviceID: uuid.NewString(),
		Sign: func(deviceID string) ([]byte, string, error) {
			der, serial, err := s.ca.SignDeviceCSR(req.Csr, deviceID, now)
			if err != nil {
				return nil, "", invalidArg("%v", err)
			}
			return der, serial, nil
		},
	})
	if err != nil {
		s.log.InfoContext(ctx, "enrolment refused", "hostname", req.Facts.Hostname, "error", err)
		return nil, err
	}
	action := "device.enroll"
	if res.Reenrolled {
		action = "device.reenroll"
	}
	if err := s.audit(ctx, "device:"+res.Device.ID, action, res.Device.ID,
		fmt.Sprintf("hostname=%s machine_id=%s", req.Facts.Hostname, req.Facts.MachineId)); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "device enrolled", "device", res.Device.ID, "hostname", req.Facts.Hostname, "reenrolled", res.Reenrolled)
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.EnrollResponse{
		DeviceId:      res.Device.ID,
		Certificate:   res.CertDER,
		CaCertificate: s.ca.Cert.Raw,
		Policy:        p,
	}, nil
}

// Report stores a device's state and events. The device is the one named
// by the verified client certificate; the body cannot name another.
func (s *Server) Report(ctx context.Context, req *mamoriv1.ReportRequest) (*mamoriv1.ReportResponse, error) {
	dev, ok := deviceFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no device identity")
	}
	if err := validateReport(req); err != nil {
		return nil, err
	}
	p, err := s.currentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	verdict, reasons := compliance.Evaluate(p, req.Statuses)
	now := s.now()
	res, err := s.ingest.Submit(ctx, store.ReportInput{
		DeviceID:      dev.ID,
		CertSerial:    dev.Serial,
		ReceivedAt:    now,
		Facts:         req.Facts,
		Statuses:      req.Statuses,
		Events:        req.Events,
		PolicyVersion: req.PolicyVersion,
		Verdict:       verdict,
		Reasons:       reasons,
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A certificate of ours for a device the store does not know.
		return nil, status.Error(codes.Unauthenticated, "unknown device: enrol again")
	case errors.Is(err, store.ErrDeviceRevoked), errors.Is(err, store.ErrCertSuperseded), errors.Is(err, store.ErrWrongDevice):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("store report of %s: %w", dev.ID, err)
	}
	resp := &mamoriv1.ReportResponse{
		AckedEventIds: make([]string, len(req.Events)),
		NextReportIn:  durationpb.New(policy.ReportInterval(p)),
		ServerTime:    timestamppb.New(now),
	}
	// Every event in the request is stored now: new ones by this commit,
	// duplicates by an earlier one.
	for i, e := range req.Events {
		resp.AckedEventIds[i] = e.Id
	}
	if req.PolicyVersion != p.Version {
		resp.Policy = p
	}
	if len(res.Changes) > 0 {
		s.log.InfoContext(ctx, "control state changed", "device", dev.ID, "controls", res.Changes, "verdict", verdict)
	}
	return resp, nil
}
