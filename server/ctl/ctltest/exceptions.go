package ctltest

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// CreateException adds an exception with a predictable ID.
func (f *Fake) CreateException(_ context.Context, req *mamoriv1.CreateExceptionRequest) (*mamoriv1.CreateExceptionResponse, error) {
	if req.Reason == "" || req.Usb == "" || req.ExpiresAt == nil {
		return nil, status.Error(codes.InvalidArgument, "usb, reason and expires_at are required")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := &mamoriv1.Exception{Id: fmt.Sprintf("e0000000-0000-4000-8000-%012d", len(f.Exceptions)+1), Usb: req.Usb, User: req.User,
		Group: req.Group, Reason: req.Reason, CreatedBy: "op-1", CreatedAt: timestamppb.New(f.Now), ExpiresAt: req.ExpiresAt}
	if req.Device != "" {
		e.DeviceId = req.Device
		for _, d := range f.Devices {
			if d.GetFacts().GetHostname() == req.Device {
				e.DeviceId = d.Id
			}
		}
	}
	f.Exceptions = append(f.Exceptions, e)
	return &mamoriv1.CreateExceptionResponse{Exception: e}, nil
}

// ListExceptions returns Exceptions, newest first; --all includes the
// revoked and expired ones.
func (f *Fake) ListExceptions(_ context.Context, req *mamoriv1.ListExceptionsRequest) (*mamoriv1.ListExceptionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &mamoriv1.ListExceptionsResponse{}
	for i := len(f.Exceptions) - 1; i >= 0; i-- {
		e := f.Exceptions[i]
		if !req.All && (e.RevokedAt != nil || !e.ExpiresAt.AsTime().After(f.Now)) {
			continue
		}
		if req.Device != "" && e.DeviceId != req.Device && !strings.HasPrefix(e.DeviceId, req.Device) {
			continue
		}
		resp.Exceptions = append(resp.Exceptions, e)
	}
	return resp, nil
}

// RevokeException marks one revoked.
func (f *Fake) RevokeException(_ context.Context, req *mamoriv1.RevokeExceptionRequest) (*mamoriv1.RevokeExceptionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.Exceptions {
		if e.Id == req.Id {
			if e.RevokedAt != nil {
				return nil, status.Error(codes.FailedPrecondition, "already revoked")
			}
			e = proto.Clone(e).(*mamoriv1.Exception)
			e.RevokedAt, e.RevokedBy, e.RevokeReason = timestamppb.New(f.Now), "op-1", req.Reason
			f.Exceptions[i] = e
			return &mamoriv1.RevokeExceptionResponse{Exception: e}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such exception")
}

// ImportLedger counts the CSV's lines after the header (the real parser
// is tested in server/ledger); "!" in the file makes it refuse.
func (f *Fake) ImportLedger(_ context.Context, req *mamoriv1.ImportLedgerRequest) (*mamoriv1.ImportLedgerResponse, error) {
	if strings.Contains(string(req.Csv), "!") {
		return nil, status.Error(codes.InvalidArgument, "ledger refused, nothing imported: row 2: 資産番号 (asset ID) is empty")
	}
	n := strings.Count(strings.TrimSpace(string(req.Csv)), "\n")
	return &mamoriv1.ImportLedgerResponse{Rows: int32(n)}, nil
}

// ListLedger returns Ledger.
func (f *Fake) ListLedger(context.Context, *mamoriv1.ListLedgerRequest) (*mamoriv1.ListLedgerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Ledger == nil {
		return &mamoriv1.ListLedgerResponse{}, nil
	}
	return f.Ledger, nil
}
