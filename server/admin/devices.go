package admin

import (
	"context"
	"fmt"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// DeviceStore is what the device actions need.
type DeviceStore interface {
	FindDevice(ctx context.Context, idOrHostname string) (store.Device, error)
	GetDevice(ctx context.Context, id string) (store.Device, error)
	RevokeDevice(ctx context.Context, id, reason string, at time.Time) (store.Device, error)
	SetDeviceGroup(ctx context.Context, id, group string) (store.Device, error)
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
