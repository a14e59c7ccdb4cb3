package ctltest

import (
	"bytes"
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Fixed MFA answers, so that golden files can hold them.
const (
	// MFAURI is what EnrollMFAUser returns (RFC 6238's test seed).
	MFAURI = "otpauth://totp/mamori:tanaka?algorithm=SHA1&digits=6&issuer=mamori&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	// MFATempCode is what IssueMFATempCode returns.
	MFATempCode = "ABCD-EFGH-JKMN"
)

// MFARecoveryCodes are what EnrollMFAUser returns.
var MFARecoveryCodes = []string{"AAAAA-BBBBB", "CCCCC-DDDDD", "EEEEE-FFFFF"}

// EnrollMFAUser answers with MFAURI and MFARecoveryCodes.
func (f *Fake) EnrollMFAUser(_ context.Context, req *mamoriv1.EnrollMFAUserRequest) (*mamoriv1.EnrollMFAUserResponse, error) {
	return &mamoriv1.EnrollMFAUserResponse{User: req.User, OtpauthUri: MFAURI, RecoveryCodes: MFARecoveryCodes}, nil
}

// ResetMFAUser succeeds for any user but "nobody".
func (f *Fake) ResetMFAUser(_ context.Context, req *mamoriv1.ResetMFAUserRequest) (*mamoriv1.ResetMFAUserResponse, error) {
	if req.User == "nobody" {
		return nil, status.Error(codes.NotFound, "user nobody has no factors to reset")
	}
	return &mamoriv1.ResetMFAUserResponse{}, nil
}

// UnlockMFAUser answers counter 3.
func (f *Fake) UnlockMFAUser(context.Context, *mamoriv1.UnlockMFAUserRequest) (*mamoriv1.UnlockMFAUserResponse, error) {
	return &mamoriv1.UnlockMFAUserResponse{Generation: 3}, nil
}

// IssueMFATempCode answers MFATempCode, expiring after the requested time.
func (f *Fake) IssueMFATempCode(_ context.Context, req *mamoriv1.IssueMFATempCodeRequest) (*mamoriv1.IssueMFATempCodeResponse, error) {
	return &mamoriv1.IssueMFATempCodeResponse{Code: MFATempCode, Id: "0123456789abcdef",
		ExpiresAt: timestamppb.New(f.Now.Add(req.GetExpiresIn().AsDuration()))}, nil
}

// ImportMFASeeds counts the non-empty lines.
func (f *Fake) ImportMFASeeds(_ context.Context, req *mamoriv1.ImportMFASeedsRequest) (*mamoriv1.ImportMFASeedsResponse, error) {
	n := 0
	for _, l := range bytes.Split(req.Csv, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			n++
		}
	}
	return &mamoriv1.ImportMFASeedsResponse{Imported: int32(n)}, nil
}

// ListMFAUsers returns MFAUsers.
func (f *Fake) ListMFAUsers(context.Context, *mamoriv1.ListMFAUsersRequest) (*mamoriv1.ListMFAUsersResponse, error) {
	return &mamoriv1.ListMFAUsersResponse{Users: f.MFAUsers}, nil
}
