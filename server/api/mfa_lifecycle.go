package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
)

// Event kinds a terminal sends when it accepted a one-time code; the
// attribute code_id is mfabundle.CodeID of the code's hash (agent/mfa).
const (
	eventRecoveryUsed = "mfa_recovery_used"
	eventTempCodeUsed = "mfa_temp_code_used"
	eventFailure      = "mfa_failure"
	reasonTimedOut    = "timed_out"
)

// ResetMFAUser deletes a user's factors; terminals drop them at their
// next report. The user can then be enrolled anew.
func (s *AdminService) ResetMFAUser(ctx context.Context, req *mamoriv1.ResetMFAUserRequest) (*mamoriv1.ResetMFAUserResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.actions.ResetMFA(ctx, op, req.User, req.Reason); err != nil {
		return nil, err
	}
	return &mamoriv1.ResetMFAUserResponse{}, nil
}

// UnlockMFAUser clears a user's lock-out on one device or on every one,
// at each terminal's next report.
func (s *AdminService) UnlockMFAUser(ctx context.Context, req *mamoriv1.UnlockMFAUserRequest) (*mamoriv1.UnlockMFAUserResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	counter, err := s.actions.UnlockMFA(ctx, op, req.User, req.DeviceId)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.UnlockMFAUserResponse{Generation: counter}, nil
}

// IssueMFATempCode makes a one-time temporary code. The code is in this
// answer only; the server keeps its salted hash, and terminals receive
// the hash with their next report.
func (s *AdminService) IssueMFATempCode(ctx context.Context, req *mamoriv1.IssueMFATempCodeRequest) (*mamoriv1.IssueMFATempCodeResponse, error) {
	op, err := s.adminOperator(ctx)
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
	code, rec, err := s.actions.IssueMFATempCode(ctx, op, req.User, req.Device, ttl)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.IssueMFATempCodeResponse{Code: code, Id: rec.ID, ExpiresAt: ts(rec.ExpiresAt), DeviceId: rec.DeviceID}, nil
}

// ImportMFASeeds enrols users with hardware-token seeds
// (admin.Service.ImportMFASeeds): every row is checked before anything is
// written, and the store writes all rows or none.
func (s *AdminService) ImportMFASeeds(ctx context.Context, req *mamoriv1.ImportMFASeedsRequest) (*mamoriv1.ImportMFASeedsResponse, error) {
	op, err := s.adminOperator(ctx)
	if err != nil {
		return nil, err
	}
	n, err := s.actions.ImportMFASeeds(ctx, op, req.Csv, req.Replace)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.ImportMFASeedsResponse{Imported: int32(n)}, nil
}

// ListMFAUsers lists who has which factor, never a secret.
func (s *AdminService) ListMFAUsers(ctx context.Context, _ *mamoriv1.ListMFAUsersRequest) (*mamoriv1.ListMFAUsersResponse, error) {
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

// errNothingConsumed: the codes were consumed before (a re-sent event),
// so there is nothing to record.
var errNothingConsumed = errors.New("nothing consumed")

// consumeMFACodes marks the one-time codes a terminal reports as used, so
// every other terminal's next bundle drops them. It runs after the
// report is stored; an error fails the report, so the agent sends it
// again (its events are stored once) and the codes are consumed then.
func (s *AgentService) consumeMFACodes(ctx context.Context, deviceID string, evs []*mamoriv1.Event) error {
	var byUser map[string][]string
	for _, e := range evs {
		// A one-time code the terminal spent on a login the module had
		// given up on (mfa_failure reason=timed_out, agent/mfa) is used
		// all the same.
		spent := e.Kind == eventFailure && e.Attributes["reason"] == reasonTimedOut
		if e.Control != policy.ControlLoginMFA || (e.Kind != eventRecoveryUsed && e.Kind != eventTempCodeUsed && !spent) {
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
		var n int
		err := s.audited(ctx, "device:"+deviceID, "mfa.code_used", "user:"+user, "code_ids="+strings.Join(ids, ","),
			func(actx context.Context) error {
				var err error
				if n, err = s.store.ConsumeMFACodes(actx, user, ids, s.now()); err != nil {
					return fmt.Errorf("consume one-time codes of %s: %w", user, err)
				}
				if n == 0 {
					return errNothingConsumed
				}
				return nil
			})
		if errors.Is(err, errNothingConsumed) {
			continue
		}
		if err != nil {
			return err
		}
		s.forgetMFAGeneration()
	}
	return nil
}
