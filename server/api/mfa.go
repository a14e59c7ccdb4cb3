package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// hpkePublicKeyLen is an X25519 public key.
const hpkePublicKeyLen = 32

// EnrollMFAUser makes a user's TOTP secret and recovery codes. They are in
// this answer only; every terminal whose policy allows the user receives
// them, sealed to it, with its next report.
func (s *Server) EnrollMFAUser(ctx context.Context, req *mamoriv1.EnrollMFAUserRequest) (*mamoriv1.EnrollMFAUserResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.MFAEnroll(ctx, op.ID, req.User, req.Replace)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.EnrollMFAUserResponse{User: e.Record.User, OtpauthUri: e.URI, RecoveryCodes: e.RecoveryCodes}, nil
}

// MFAEnroll enrols user with a new TOTP secret and recovery codes (the
// RPC EnrollMFAUser, shared with the console like the lifecycle actions
// in mfa_lifecycle.go); audited mfa.enroll (mfa.reenroll with replace),
// never with a secret. An enrolled user without replace is
// codes.AlreadyExists; no MFA key is codes.FailedPrecondition.
func (s *Server) MFAEnroll(ctx context.Context, operatorID, rawUser string, replace bool) (mfa.Enrollment, error) {
	if s.mfaKey == nil {
		return mfa.Enrollment{}, status.Error(codes.FailedPrecondition, "this server has no MFA key (mfa.key in its data directory)")
	}
	user := strings.TrimSpace(rawUser)
	if err := mfa.ValidUser(user); err != nil {
		return mfa.Enrollment{}, invalidArg("%v", err)
	}
	e, err := s.mfaKey.Enroll(user, operatorID, s.now())
	if err != nil {
		return mfa.Enrollment{}, err
	}
	action := "mfa.enroll"
	if replace {
		action = "mfa.reenroll"
	}
	err = s.audited(ctx, operatorID, action, "user:"+user, fmt.Sprintf("method=totp recovery_codes=%d", len(e.RecoveryCodes)),
		func(actx context.Context) error {
			_, err := s.store.PutMFAUser(actx, e.Record, replace)
			return err
		})
	if errors.Is(err, store.ErrConflict) {
		return mfa.Enrollment{}, status.Errorf(codes.AlreadyExists, "user %s is already enrolled: pass replace (mamorictl mfa enroll --replace) to issue a new secret", user)
	}
	if err != nil {
		return mfa.Enrollment{}, err
	}
	s.forgetMFAGeneration()
	return e, nil
}

// mfaBundle returns the device's bundle when the one it holds is stale,
// else nil. A report costs one cached read of the MFA generation; the
// users are read and sealed only for a device that needs them.
func (s *Server) mfaBundle(ctx context.Context, deviceID string, req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time) (*mamoriv1.SealedMFABundle, error) {
	if s.mfaKey == nil || len(req.HpkePublicKey) == 0 {
		return nil, nil
	}
	if len(req.HpkePublicKey) != hpkePublicKeyLen {
		return nil, fmt.Errorf("hpke_public_key is %d bytes; want %d", len(req.HpkePublicKey), hpkePublicKeyLen)
	}
	gen, err := s.mfaGeneration(ctx)
	if err != nil {
		return nil, err
	}
	version := mfa.Version(gen, p)
	if req.MfaBundleVersion == version {
		return nil, nil
	}
	var d mfa.BundleData
	if d.Users, err = s.store.MFAUsers(ctx); err != nil {
		return nil, err
	}
	if d.TempCodes, err = s.store.MFATempCodes(ctx, now); err != nil {
		return nil, err
	}
	if d.Unlocks, err = s.store.MFAUnlocks(ctx); err != nil {
		return nil, err
	}
	b, err := s.mfaKey.Bundle(d, p, version, deviceID, req.HpkePublicKey, now)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "mfa bundle sent", "device", deviceID, "version", version)
	return b, nil
}

// mfaGeneration is the store's MFA generation, cached like the policy.
func (s *Server) mfaGeneration(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.mfaGenOK && now.Sub(s.mfaGenAt) < s.policyTTL {
		return s.mfaGen, nil
	}
	g, err := s.store.MFAGeneration(ctx)
	if err != nil {
		return 0, fmt.Errorf("mfa generation: %w", err)
	}
	s.mfaGen, s.mfaGenAt, s.mfaGenOK = g, now, true
	return g, nil
}

func (s *Server) forgetMFAGeneration() {
	s.mu.Lock()
	s.mfaGenOK = false
	s.mu.Unlock()
}
