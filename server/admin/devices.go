package admin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/server/store"
)

// DeviceStore is what the device actions need.
type DeviceStore interface {
	FindDevice(ctx context.Context, idOrHostname string) (store.Device, error)
	GetDevice(ctx context.Context, id string) (store.Device, error)
	RevokeDevice(ctx context.Context, id, reason string, at time.Time) (store.Device, error)
	SetDeviceGroup(ctx context.Context, id, group string) (store.Device, error)
	ApproveClone(ctx context.Context, id string, at time.Time) (approved, replaced store.Device, err error)
	ApproveEK(ctx context.Context, e store.ApprovedEK) (bool, error)
	ListApprovedEKs(ctx context.Context) ([]store.ApprovedEK, error)
}

// ApproveReenrollment confirms that a device (ID or hostname) flagged as
// a possible clone is the device whose machine ID it claimed, re-enrolled
// (the terminal was re-imaged and lost its key): it takes over that
// record's machine ID (and group when it has none), and that record is
// revoked naming it. Audited device.approve-reenrolment with both IDs and
// the reason. Refusals: ErrInvalid (not flagged), ErrNotFound,
// ErrAmbiguous, ErrConflict.
func (s *Service) ApproveReenrollment(ctx context.Context, op Operator, device, reason string) (approved, replaced store.Device, err error) {
	const action = "device.approve-reenrolment"
	if device == "" {
		return store.Device{}, store.Device{}, invalid(action, "device", "device is required")
	}
	if err := CheckString(action, "device", device, MaxShortString); err != nil {
		return store.Device{}, store.Device{}, err
	}
	if err := checkReason(action, reason); err != nil {
		return store.Device{}, store.Device{}, err
	}
	if err := checkVisible(action, "reason", reason); err != nil {
		return store.Device{}, store.Device{}, err
	}
	d, err := s.st.FindDevice(ctx, device)
	if err != nil {
		return store.Device{}, store.Device{}, storeRefusal(action, "device", err)
	}
	if d.CloneOf == "" {
		return store.Device{}, store.Device{}, invalid(action, "device", "device %s is not flagged as a possible clone: nothing to approve", d.ID)
	}
	err = s.audited(ctx, op, action, d.ID, fmt.Sprintf("replaces=%s reason=%q", d.CloneOf, reason), func(ctx context.Context) error {
		var err error
		approved, replaced, err = s.st.ApproveClone(ctx, d.ID, s.now())
		return err
	})
	if errors.Is(err, store.ErrNotClone) {
		return store.Device{}, store.Device{}, invalid(action, "device", "device %s is not flagged as a possible clone: nothing to approve", d.ID)
	}
	if err == nil {
		// Group and revocation decide policy and bundles.
		s.changed(PolicyChanged)
	}
	return approved, replaced, storeRefusal(action, "device", err)
}

// ApproveEK puts a TPM endorsement key on the approved list: enrolments
// that prove it are attested although its certificate does not chain to a
// configured vendor root. Audited tpm.approve-ek (also when it was
// approved already: the officer's decision is on record). Refusals:
// ErrInvalid (not a SHA-256 hex fingerprint).
func (s *Service) ApproveEK(ctx context.Context, op Operator, fingerprint, note string) (bool, error) {
	const action = "tpm.approve-ek"
	fp := strings.ToLower(strings.TrimSpace(fingerprint))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
		return false, invalid(action, "ek_fingerprint", "ek_fingerprint must be the SHA-256 of the EK public key, 64 hex digits (mamorictl device shows it)")
	}
	if err := checkReason(action, note); err != nil {
		return false, err
	}
	if err := checkVisible(action, "reason", note); err != nil {
		return false, err
	}
	var added bool
	err := s.audited(ctx, op, action, "ek:"+fp, fmt.Sprintf("note=%q", note), func(ctx context.Context) error {
		var err error
		added, err = s.st.ApproveEK(ctx, store.ApprovedEK{Fingerprint: fp, ApprovedBy: op.ID, ApprovedAt: s.now(), Note: note})
		return err
	})
	return added, err
}

// checkVisible refuses control and bidi characters: an approval's reason
// is what a later reader of the audit log trusts.
func checkVisible(action, field, s string) error {
	if strings.ContainsFunc(s, textsafe.IsHidden) {
		return invalid(action, field, "%s must not contain control or bidi characters", field)
	}
	return nil
}

// ListApprovedEKs lists the approved endorsement keys.
func (s *Service) ListApprovedEKs(ctx context.Context) ([]store.ApprovedEK, error) {
	return s.st.ListApprovedEKs(ctx)
}

// RevokeDevice refuses the device's certificate from now on; audited
// device.revoke with the reason. Refusals: ErrInvalid, ErrNotFound.
func (s *Service) RevokeDevice(ctx context.Context, op Operator, deviceID, reason string) (store.Device, error) {
	const action = "device.revoke"
	if deviceID == "" {
		return store.Device{}, invalid(action, "device_id", "device_id is required")
	}
	if err := CheckString(action, "device_id", deviceID, MaxShortString); err != nil {
		return store.Device{}, err
	}
	if err := checkReason(action, reason); err != nil {
		return store.Device{}, err
	}
	var d store.Device
	err := s.audited(ctx, op, action, deviceID, reason, func(ctx context.Context) error {
		var err error
		d, err = s.st.RevokeDevice(ctx, deviceID, reason, s.now())
		return err
	})
	return d, storeRefusal(action, "device_id", err)
}

// SetDeviceGroup moves a device (ID or hostname) to a device group ("" is
// none); audited device.group with both groups and the reason.
// Refusals: ErrInvalid, ErrNotFound, ErrAmbiguous.
func (s *Service) SetDeviceGroup(ctx context.Context, op Operator, device, group, reason string) (store.Device, error) {
	const action = "device.group"
	if device == "" {
		return store.Device{}, invalid(action, "device", "device is required")
	}
	if err := CheckString(action, "device", device, MaxShortString); err != nil {
		return store.Device{}, err
	}
	if err := CheckGroup(action, group); err != nil {
		return store.Device{}, err
	}
	if err := checkReason(action, reason); err != nil {
		return store.Device{}, err
	}
	d, err := s.st.FindDevice(ctx, device)
	if err != nil {
		return store.Device{}, storeRefusal(action, "device", err)
	}
	from := d.Group
	err = s.audited(ctx, op, action, d.ID, fmt.Sprintf("from=%q to=%q reason=%q", from, group, reason),
		func(ctx context.Context) error {
			var err error
			d, err = s.st.SetDeviceGroup(ctx, d.ID, group)
			return err
		})
	// A group decides which overrides and exceptions apply.
	s.changed(PolicyChanged)
	return d, storeRefusal(action, "device", err)
}
