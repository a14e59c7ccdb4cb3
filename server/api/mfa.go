package api

import (
	"context"
	"fmt"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
)

// hpkePublicKeyLen is an X25519 public key.
const hpkePublicKeyLen = 32

// EnrollMFAUser makes a user's TOTP secret and recovery codes
// (admin.Service.EnrollMFA). They are in this answer only; every terminal
// whose policy allows the user receives them, sealed to it, with its next
// report.
func (s *AdminService) EnrollMFAUser(ctx context.Context, req *mamoriv1.EnrollMFAUserRequest) (*mamoriv1.EnrollMFAUserResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.actions.EnrollMFA(ctx, op, req.User, req.Replace)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.EnrollMFAUserResponse{User: e.Record.User, OtpauthUri: e.URI, RecoveryCodes: e.RecoveryCodes}, nil
}

// mfaBundle returns the device's bundle when the one it holds is stale,
// else nil. A report costs one cached read of the MFA generation; the
// users are read and sealed only for a device that needs them.
//
// A device gets the factors of the users its effective policy names, and
// nothing when it may hold none (mfa.Access.Refusal: no login-mfa
// control, nobody named, or require_attested and its key not attested);
// a device that holds a bundle then gets the empty one, which deletes it.
func (s *AgentService) mfaBundle(ctx context.Context, dev deviceIdentity, req *mamoriv1.ReportRequest, p *mamoriv1.Policy, now time.Time) (*mamoriv1.SealedMFABundle, error) {
	deviceID := dev.ID
	if s.mfaKey == nil || len(req.HpkePublicKey) == 0 {
		return nil, nil
	}
	if len(req.HpkePublicKey) != hpkePublicKeyLen {
		return nil, fmt.Errorf("hpke_public_key is %d bytes; want %d", len(req.HpkePublicKey), hpkePublicKeyLen)
	}
	if why := mfa.AccessOf(p).Refusal(dev.KeyAttested); why != "" {
		if req.MfaBundleVersion == "" || req.MfaBundleVersion == mfa.NoBundle {
			return nil, nil
		}
		b, err := mfa.Empty(deviceID, req.HpkePublicKey, now)
		if err != nil {
			return nil, err
		}
		s.log.InfoContext(ctx, "mfa bundle withdrawn", "device", deviceID, "held", req.MfaBundleVersion, "why", why)
		return b, nil
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
	if d.Logins, err = s.store.MFALoginStates(ctx); err != nil {
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
func (s *cache) mfaGeneration(ctx context.Context) (int64, error) {
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

func (s *cache) forgetMFAGeneration() {
	s.mu.Lock()
	s.mfaGenOK = false
	s.mu.Unlock()
}
