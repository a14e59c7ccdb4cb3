package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// MFAStore is what the MFA lifecycle needs.
type MFAStore interface {
	GetDevice(ctx context.Context, id string) (store.Device, error)
	MFAUsers(ctx context.Context) ([]store.MFAUser, error)
	PutMFAUser(ctx context.Context, u store.MFAUser, replace bool) (int64, error)
	DeleteMFAUser(ctx context.Context, user string) (int64, error)
	ImportMFAUsers(ctx context.Context, us []store.MFAUser, replace bool) (int64, error)
	PutMFATempCode(ctx context.Context, c store.MFATempCode) (int64, error)
	UnlockMFAUser(ctx context.Context, user, deviceID string) (gen, counter int64, err error)
	// For privileged temporary codes: the policy's privileged_users, the
	// terminals' reported administrators, the device a code is bound to.
	CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error)
	ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error)
	FindDevice(ctx context.Context, idOrHostname string) (store.Device, error)
}

// The MFA lifecycle. Users are named as terminals know them
// (mfa.ValidUser); the audit target is "user:<name>". No action records a
// secret or a code: only how many, their IDs and expiry.

// mfaUser trims and checks a user name.
func mfaUser(action, raw string) (string, error) {
	user := strings.TrimSpace(raw)
	if err := mfa.ValidUser(user); err != nil {
		return "", invalid(action, "user", "%v", err)
	}
	return user, nil
}

func (s *Service) needMFAKey(action string) error {
	if s.mfaKey == nil {
		return refused(action, ErrUnavailable, "", "this server has no MFA key (mfa.key in its data directory)")
	}
	return nil
}

// EnrollMFA enrols user with a new TOTP secret and recovery codes, which
// are in the answer only; audited mfa.enroll (mfa.reenroll with replace).
// Refusals: ErrUnavailable (no MFA key), ErrInvalid, ErrExists (enrolled,
// without replace).
func (s *Service) EnrollMFA(ctx context.Context, op Operator, rawUser string, replace bool) (mfa.Enrollment, error) {
	action := "mfa.enroll"
	if replace {
		action = "mfa.reenroll"
	}
	if err := s.needMFAKey(action); err != nil {
		return mfa.Enrollment{}, err
	}
	user, err := mfaUser(action, rawUser)
	if err != nil {
		return mfa.Enrollment{}, err
	}
	e, err := s.mfaKey.Enroll(user, op.ID, s.now())
	if err != nil {
		return mfa.Enrollment{}, err
	}
	err = s.audited(ctx, op, action, "user:"+user, fmt.Sprintf("method=totp recovery_codes=%d", len(e.RecoveryCodes)),
		func(actx context.Context) error {
			_, err := s.st.PutMFAUser(actx, e.Record, replace)
			return err
		})
	if errors.Is(err, store.ErrConflict) {
		return mfa.Enrollment{}, refused(action, ErrExists, "user",
			"user %s is already enrolled: pass replace (mamorictl mfa enroll --replace) to issue a new secret", user)
	}
	if err != nil {
		return mfa.Enrollment{}, err
	}
	s.changed(MFAChanged)
	return e, nil
}

// ResetMFA deletes user's factors; terminals drop them at their next
// report, and the user can be enrolled anew. Audited mfa.reset with the
// reason (optional here; the console requires one). Refusals: ErrInvalid,
// ErrNotFound (no factors).
func (s *Service) ResetMFA(ctx context.Context, op Operator, rawUser, rawReason string) error {
	const action = "mfa.reset"
	user, err := mfaUser(action, rawUser)
	if err != nil {
		return err
	}
	reason := strings.TrimSpace(rawReason)
	if err := CheckString(action, "reason", reason, MaxReasonLength); err != nil {
		return err
	}
	detail := ""
	if reason != "" {
		detail = "reason=" + strconv.Quote(reason)
	}
	err = s.audited(ctx, op, action, "user:"+user, detail, func(actx context.Context) error {
		_, err := s.st.DeleteMFAUser(actx, user)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return refused(action, ErrNotFound, "user", "user %s has no factors to reset", user)
	}
	if err != nil {
		return err
	}
	s.changed(MFAChanged)
	return nil
}

// UnlockMFA raises user's unlock counter on deviceID ("" for every
// device), clearing a lock-out at each terminal's next report, and
// returns the counter; audited mfa.unlock. Refusals: ErrInvalid,
// ErrNotFound (field "device": no device with that ID).
func (s *Service) UnlockMFA(ctx context.Context, op Operator, rawUser, rawDevice string) (int64, error) {
	const action = "mfa.unlock"
	user, err := mfaUser(action, rawUser)
	if err != nil {
		return 0, err
	}
	device := strings.TrimSpace(rawDevice)
	if err := CheckString(action, "device_id", device, MaxShortString); err != nil {
		return 0, err
	}
	if device != "" {
		if _, err := s.st.GetDevice(ctx, device); errors.Is(err, store.ErrNotFound) {
			return 0, refused(action, ErrNotFound, "device", "device %q is not known: give a device ID ('mamorictl devices' lists them)", truncate(device))
		} else if err != nil {
			return 0, err
		}
	}
	target := "all devices"
	if device != "" {
		target = "device " + device
	}
	var counter int64
	err = s.audited(ctx, op, action, "user:"+user, target, func(actx context.Context) error {
		var err error
		_, counter, err = s.st.UnlockMFAUser(actx, user, device)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.changed(MFAChanged)
	return counter, nil
}

// IssueMFATempCode makes a one-time temporary code valid for ttl and
// returns it with its stored record (the code is in the answer only; the
// server keeps its salted hash); audited mfa.temp_code with the code's ID,
// expiry, the device it is bound to and why the user is privileged.
// rawDevice (an ID or hostname, optional) binds the code to one terminal.
// For a privileged user (mfa.PrivilegedReason: root, Administrator, the
// policy's privileged_users, an administrator a terminal reports) the
// operator must be an officer, the code must be bound to a device and
// live at most mfa.MaxPrivilegedTempCodeTTL. Refusals: ErrInvalid,
// ErrForbidden (field "privileged": not an officer), ErrNotFound/
// ErrAmbiguous (field "device").
func (s *Service) IssueMFATempCode(ctx context.Context, op Operator, rawUser, rawDevice string, ttl time.Duration) (string, store.MFATempCode, error) {
	const action = "mfa.temp_code"
	user, err := mfaUser(action, rawUser)
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	if ttl < mfa.MinTempCodeTTL || ttl > mfa.MaxTempCodeTTL {
		return "", store.MFATempCode{}, invalid(action, "expires_in", "expires_in %v: must be between %v and %v", ttl, mfa.MinTempCodeTTL, mfa.MaxTempCodeTTL)
	}
	device := strings.TrimSpace(rawDevice)
	if err := CheckString(action, "device", device, MaxShortString); err != nil {
		return "", store.MFATempCode{}, err
	}
	var dev store.Device
	if device != "" {
		if dev, err = s.st.FindDevice(ctx, device); err != nil {
			return "", store.MFATempCode{}, storeRefusal(action, "device", err)
		}
		if !dev.RevokedAt.IsZero() {
			return "", store.MFATempCode{}, refused(action, ErrNotFound, "device", "device %s is revoked", dev.ID)
		}
	}
	why, err := s.privileged(ctx, user)
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	if why != "" {
		switch {
		case !op.Officer:
			return "", store.MFATempCode{}, refused(action, ErrForbidden, "privileged",
				"privileged user %s (%s): a temporary code for this user needs the officer role", user, why)
		case dev.ID == "":
			return "", store.MFATempCode{}, invalid(action, "privileged",
				"privileged user %s (%s): bind the code to the one terminal it is for (device)", user, why)
		case ttl > mfa.MaxPrivilegedTempCodeTTL:
			return "", store.MFATempCode{}, invalid(action, "privileged",
				"privileged user %s (%s): the code may live at most %v, not %v", user, why, mfa.MaxPrivilegedTempCodeTTL, ttl)
		}
	}
	code, rec, err := mfa.NewTempCode(user, op.ID, s.now(), ttl)
	if err != nil {
		return "", store.MFATempCode{}, invalid(action, "", "%v", err)
	}
	rec.DeviceID = dev.ID
	detail := fmt.Sprintf("id=%s expires=%s", rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	if rec.DeviceID != "" {
		detail += " device=" + rec.DeviceID
	}
	if why != "" {
		detail += " privileged=" + strconv.Quote(why)
	}
	err = s.audited(ctx, op, action, "user:"+user, detail, func(actx context.Context) error {
		_, err := s.st.PutMFATempCode(actx, rec)
		return err
	})
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	s.changed(MFAChanged)
	return code, rec, nil
}

// privileged says why user is privileged for a temporary code ("" when
// not): see mfa.PrivilegedReason. The terminals' reports are read from
// every device that is not revoked.
func (s *Service) privileged(ctx context.Context, user string) (string, error) {
	p, err := s.st.CurrentPolicy(ctx)
	if err != nil {
		return "", err
	}
	devs, err := s.st.ListDevices(ctx, store.DeviceFilter{})
	if err != nil {
		return "", err
	}
	facts := map[string][]string{}
	for _, d := range devs {
		if d.RevokedAt.IsZero() && len(d.Facts.GetPrivilegedUsers()) > 0 {
			facts[d.ID] = d.Facts.GetPrivilegedUsers()
		}
	}
	return mfa.PrivilegedReason(user, p, facts), nil
}

// ImportMFASeeds enrols users with hardware-token seeds (a CSV file).
// Every row is checked, against the file and against the users already
// enrolled, before anything is written; the store writes all rows or
// none. Audited mfa.import with the users. Refusals: ErrUnavailable,
// ErrInvalid, ErrConflict (users changed during the import).
func (s *Service) ImportMFASeeds(ctx context.Context, op Operator, csv []byte, replace bool) (int, error) {
	const action = "mfa.import"
	if err := s.needMFAKey(action); err != nil {
		return 0, err
	}
	rows, err := mfa.ParseSeedCSV(csv)
	if err != nil {
		return 0, invalid(action, "csv", "%v", err)
	}
	existing, err := s.st.MFAUsers(ctx)
	if err != nil {
		return 0, err
	}
	enrolled, serialOf := map[string]bool{}, map[string]string{}
	for _, u := range existing {
		enrolled[u.User] = true
		if u.TokenSerial != "" {
			serialOf[u.TokenSerial] = u.User
		}
	}
	var errs mfa.RowErrors
	for _, r := range rows {
		if enrolled[r.User] && !replace {
			errs = append(errs, fmt.Sprintf("line %d: user %s is already enrolled (import with replace to give them this token)", r.Line, r.User))
		}
		if owner, ok := serialOf[r.Serial]; ok && owner != r.User {
			errs = append(errs, fmt.Sprintf("line %d: token %s belongs to user %s (reset that user first)", r.Line, r.Serial, owner))
		}
		if len(errs) >= 20 {
			break
		}
	}
	if len(errs) > 0 {
		return 0, invalid(action, "csv", "%v", errs)
	}
	now := s.now()
	recs := make([]store.MFAUser, len(rows))
	names := make([]string, len(rows))
	for i, r := range rows {
		recs[i], names[i] = s.mfaKey.ImportRecord(r, op.ID, now), r.User
	}
	listed := names
	if len(listed) > 50 {
		listed = append(listed[:50:50], fmt.Sprintf("…(%d_more)", len(rows)-50))
	}
	err = s.audited(ctx, op, action, "users:"+fmt.Sprint(len(rows)),
		fmt.Sprintf("method=totp-hardware replace=%t users=%s", replace, strings.Join(listed, ",")), func(actx context.Context) error {
			_, err := s.st.ImportMFAUsers(actx, recs, replace)
			return err
		})
	if errors.Is(err, store.ErrConflict) {
		return 0, refused(action, ErrConflict, "", "users or tokens changed during the import; nothing was imported: run it again")
	}
	if err != nil {
		return 0, err
	}
	s.changed(MFAChanged)
	return len(rows), nil
}
