package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// Event kinds a terminal sends when it accepted a one-time code; the
// attribute code_id is mfabundle.CodeID of the code's hash (agent/mfa).
const (
	eventRecoveryUsed = "mfa_recovery_used"
	eventTempCodeUsed = "mfa_temp_code_used"
)

func (s *Server) mfaUser(raw string) (string, error) {
	user := strings.TrimSpace(raw)
	if err := mfa.ValidUser(user); err != nil {
		return "", invalidArg("%v", err)
	}
	return user, nil
}

// ResetMFAUser deletes a user's factors; terminals drop them at their
// next report. The user can then be enrolled anew.
func (s *Server) ResetMFAUser(ctx context.Context, req *mamoriv1.ResetMFAUserRequest) (*mamoriv1.ResetMFAUserResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.MFAReset(ctx, op.ID, req.User, req.Reason); err != nil {
		return nil, err
	}
	return &mamoriv1.ResetMFAUserResponse{}, nil
}

// UnlockMFAUser clears a user's lock-out on one device or on every one,
// at each terminal's next report.
func (s *Server) UnlockMFAUser(ctx context.Context, req *mamoriv1.UnlockMFAUserRequest) (*mamoriv1.UnlockMFAUserResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	counter, err := s.MFAUnlock(ctx, op.ID, req.User, req.DeviceId)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.UnlockMFAUserResponse{Generation: counter}, nil
}

// IssueMFATempCode makes a one-time temporary code. The code is in this
// answer only; the server keeps its salted hash, and terminals receive
// the hash with their next report.
func (s *Server) IssueMFATempCode(ctx context.Context, req *mamoriv1.IssueMFATempCodeRequest) (*mamoriv1.IssueMFATempCodeResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	ttl := mfa.DefaultTempCodeTTL
	if req.ExpiresIn != nil {
		if err := req.ExpiresIn.CheckValid(); err != nil {
			return nil, invalidArg("expires_in: %v", err)
		}
		ttl = req.ExpiresIn.AsDuration()
	}
	code, rec, err := s.MFATempCode(ctx, op.ID, req.User, ttl)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.IssueMFATempCodeResponse{Code: code, Id: rec.ID, ExpiresAt: ts(rec.ExpiresAt)}, nil
}

// The MFA lifecycle actions, shared by the AdminService RPCs (operator
// from the mTLS identity) and the web console (operator from its
// session), so the two cannot drift: the same checks, store calls, cache
// invalidation and audit records (actor operatorID). Errors are
// invalid-argument errors (status.Code gives codes.InvalidArgument), gRPC
// status errors, or store errors.

// MFAReset deletes user's factors (the RPC ResetMFAUser); audited
// mfa.reset with the reason. No factors is codes.NotFound.
func (s *Server) MFAReset(ctx context.Context, operatorID, rawUser, rawReason string) error {
	user, err := s.mfaUser(rawUser)
	if err != nil {
		return err
	}
	reason := strings.TrimSpace(rawReason)
	if err := checkString("reason", reason, maxNoteLength); err != nil {
		return err
	}
	detail := ""
	if reason != "" {
		detail = "reason=" + strconv.Quote(reason)
	}
	err = s.audited(ctx, operatorID, "mfa.reset", "user:"+user, detail, func(actx context.Context) error {
		_, err := s.store.DeleteMFAUser(actx, user)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return status.Errorf(codes.NotFound, "user %s has no factors to reset", user)
	}
	if err != nil {
		return err
	}
	s.forgetMFAGeneration()
	return nil
}

// MFAUnlock raises user's unlock counter on deviceID ("" for every
// device) and returns it (the RPC UnlockMFAUser); audited mfa.unlock. An
// unknown device is codes.NotFound.
func (s *Server) MFAUnlock(ctx context.Context, operatorID, rawUser, rawDevice string) (int64, error) {
	user, err := s.mfaUser(rawUser)
	if err != nil {
		return 0, err
	}
	device := strings.TrimSpace(rawDevice)
	if err := checkString("device_id", device, MaxShortString); err != nil {
		return 0, err
	}
	if device != "" {
		if _, err := s.store.GetDevice(ctx, device); errors.Is(err, store.ErrNotFound) {
			return 0, status.Errorf(codes.NotFound, "device %q is not known: give a device ID ('mamorictl devices' lists them)", truncate(device))
		} else if err != nil {
			return 0, err
		}
	}
	target := "all devices"
	if device != "" {
		target = "device " + device
	}
	var counter int64
	err = s.audited(ctx, operatorID, "mfa.unlock", "user:"+user, target, func(actx context.Context) error {
		var err error
		_, counter, err = s.store.UnlockMFAUser(actx, user, device)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.forgetMFAGeneration()
	return counter, nil
}

// MFATempCode makes a one-time temporary code valid for ttl (the RPC
// IssueMFATempCode) and returns it with its stored record; audited
// mfa.temp_code with the code's ID and expiry, never the code.
func (s *Server) MFATempCode(ctx context.Context, operatorID, rawUser string, ttl time.Duration) (string, store.MFATempCode, error) {
	user, err := s.mfaUser(rawUser)
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	if ttl < mfa.MinTempCodeTTL || ttl > mfa.MaxTempCodeTTL {
		return "", store.MFATempCode{}, invalidArg("expires_in %v: must be between %v and %v", ttl, mfa.MinTempCodeTTL, mfa.MaxTempCodeTTL)
	}
	code, rec, err := mfa.NewTempCode(user, operatorID, s.now(), ttl)
	if err != nil {
		return "", store.MFATempCode{}, invalidArg("%v", err)
	}
	err = s.audited(ctx, operatorID, "mfa.temp_code", "user:"+user,
		fmt.Sprintf("id=%s expires=%s", rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339)), func(actx context.Context) error {
			_, err := s.store.PutMFATempCode(actx, rec)
			return err
		})
	if err != nil {
		return "", store.MFATempCode{}, err
	}
	s.forgetMFAGeneration()
	return code, rec, nil
}

// ImportMFASeeds enrols users with hardware-token seeds. Every row is
// checked, against the file and against the users already enrolled,
// before anything is written; the store writes all rows or none.
func (s *Server) ImportMFASeeds(ctx context.Context, req *mamoriv1.ImportMFASeedsRequest) (*mamoriv1.ImportMFASeedsResponse, error) {
	op, err := s.operator(ctx)
	if err != nil {
		return nil, err
	}
	if s.mfaKey == nil {
		return nil, status.Error(codes.FailedPrecondition, "this server has no MFA key (mfa.key in its data directory)")
	}
	rows, err := mfa.ParseSeedCSV(req.Csv)
	if err != nil {
		return nil, invalidArg("%v", err)
	}
	existing, err := s.store.MFAUsers(ctx)
	if err != nil {
		return nil, err
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
		if enrolled[r.User] && !req.Replace {
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
		return nil, invalidArg("%v", errs)
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
	err = s.audited(ctx, op.ID, "mfa.import", "users:"+fmt.Sprint(len(rows)),
		fmt.Sprintf("method=totp-hardware replace=%t users=%s", req.Replace, strings.Join(listed, ",")), func(actx context.Context) error {
			_, err := s.store.ImportMFAUsers(actx, recs, req.Replace)
			return err
		})
	if errors.Is(err, store.ErrConflict) {
		return nil, status.Error(codes.Aborted, "users or tokens changed during the import; nothing was imported: run it again")
	}
	if err != nil {
		return nil, err
	}
	s.forgetMFAGeneration()
	return &mamoriv1.ImportMFASeedsResponse{Imported: int32(len(rows))}, nil
}

// ListMFAUsers lists who has which factor, never a secret.
func (s *Server) ListMFAUsers(ctx context.Context, _ *mamoriv1.ListMFAUsersRequest) (*mamoriv1.ListMFAUsersResponse, error) {
	users, err := s.store.MFAUsers(ctx)
	if err != nil {
		return nil, err
	}
	live, err := s.store.MFATempCodes(ctx, s.now())
	if err != nil {
		return nil, err
	}
	temp := map[string]int32{}
	for _, c := range live {
		temp[c.User]++
	}
	resp := &mamoriv1.ListMFAUsersResponse{}
	for _, u := range users {
		resp.Users = append(resp.Users, &mamoriv1.MFAUserInfo{User: u.User, Method: u.Method, EnrolledAt: ts(u.CreatedAt),
			TokenSerial: u.TokenSerial, RecoveryCodesLeft: int32(len(u.RecoveryHashes)), TempCodesActive: temp[u.User]})
		delete(temp, u.User)
	}
	for u, n := range temp { // temporary codes of users without an enrolment
		resp.Users = append(resp.Users, &mamoriv1.MFAUserInfo{User: u, Method: "none", TempCodesActive: n})
	}
	slices.SortFunc(resp.Users, func(a, b *mamoriv1.MFAUserInfo) int { return strings.Compare(a.User, b.User) })
	return resp, nil
}

var codeIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// maxCodeUsersPerReport bounds the write transactions one report can cause
// (one per user whose codes it reports used); a terminal does not see more
// than a few logins between two reports.
const maxCodeUsersPerReport = 32

// consumeMFACodes marks the one-time codes a terminal reports as used, so
// every other terminal's next bundle drops them. It runs after the
// report is stored; an error fails the report, so the agent sends it
// again (its events are stored once) and the codes are consumed then.
func (s *Server) consumeMFACodes(ctx context.Context, deviceID string, evs []*mamoriv1.Event) error {
	var byUser map[string][]string
	for _, e := range evs {
		if e.Control != policy.ControlLoginMFA || (e.Kind != eventRecoveryUsed && e.Kind != eventTempCodeUsed) {
			continue
		}
		user, id := e.Attributes["user"], e.Attributes["code_id"]
		if mfa.ValidUser(user) != nil || !codeIDRE.MatchString(id) {
			continue
		}
		if byUser == nil {
			byUser = map[string][]string{}
		}
		if _, seen := byUser[user]; !seen && len(byUser) >= maxCodeUsersPerReport {
			s.log.WarnContext(ctx, "one-time code uses of more users than one report may consume; the rest are ignored",
				"device", deviceID, "limit", maxCodeUsersPerReport)
			break
		}
		if !slices.Contains(byUser[user], id) && len(byUser[user]) < MaxMapEntries {
			byUser[user] = append(byUser[user], id)
		}
	}
	for user, ids := range byUser {
		// The record commits with the consumption (the store adds how
		// many it consumed); codes consumed before (a re-sent event) write
		// nothing and record nothing.
		actx, p := store.WithAudit(ctx, store.AuditRecord{At: s.now(), Actor: "device:" + deviceID, Action: "mfa.code_used",
			Target: "user:" + user, Detail: "code_ids=" + strings.Join(ids, ",")})
		n, err := s.store.ConsumeMFACodes(actx, user, ids, s.now())
		if err != nil {
			return fmt.Errorf("consume one-time codes of %s: %w", user, err)
		}
		if n == 0 {
			continue
		}
		s.forgetMFAGeneration()
		if _, ok := p.Taken(); !ok {
			r := p.Record()
			if err := s.audit(ctx, r.Actor, r.Action, r.Target, r.Detail); err != nil {
				return err
			}
		}
	}
	return nil
}
