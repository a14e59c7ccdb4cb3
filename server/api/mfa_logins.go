package api

import (
	"context"
	"strconv"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/mfa"
	"github.com/mamori-dev/mamori/server/store"
)

// Login events that move the fleet-wide replay and lock-out state
// (agent/mfa): a success of any method clears the user's failures, a TOTP
// success carries the step it accepted, a counted failure the device's run
// of failures, a lock-out its end.
const (
	eventSuccess   = "mfa_success"
	eventGrace     = "mfa_grace_login"
	eventLockout   = "mfa_lockout"
	maxLoginEvents = 256 // per report; a terminal sees a few logins a minute
	// stepSeconds is the TOTP period of every enrolment the server makes
	// (server/mfa.Enroll, hardware tokens: 30 s). A reported step may be
	// at most one step ahead of the server's clock (skew ±1), so a
	// terminal cannot push a user's last step into the future and lock
	// its codes out fleet-wide.
	stepSeconds = 30
	// maxFleetLockout bounds a lock-out a terminal reports (agent/mfa's
	// longest is 1 hour).
	maxFleetLockout = time.Hour
	maxFailuresSeen = 1000
)

// recordMFALogins passes the report's login events of users this device
// may serve to the store (issue #14 item 9): the other terminals of the
// user learn the accepted step and the failures with their next bundle.
// A device cannot touch users it is not allowed: it cannot lock out, or
// spend the steps of, anyone else.
func (s *AgentService) recordMFALogins(ctx context.Context, deviceID string, p *mamoriv1.Policy, evs []*mamoriv1.Event, now time.Time) error {
	access := mfa.AccessOf(p)
	var out []store.MFALoginEvent
	for _, e := range evs {
		if len(out) >= maxLoginEvents {
			break
		}
		if e.GetControl() != policy.ControlLoginMFA {
			continue
		}
		a := e.GetAttributes()
		user := a["user"]
		if mfa.ValidUser(user) != nil || !access.Allows(user) {
			continue
		}
		switch e.GetKind() {
		case eventSuccess, eventRecoveryUsed, eventTempCodeUsed, eventGrace:
			le := store.MFALoginEvent{Kind: store.MFALoginSuccess, User: user}
			if st, err := strconv.ParseInt(a["step"], 10, 64); err == nil && e.GetKind() == eventSuccess && st > 0 &&
				st <= now.Unix()/stepSeconds+1 {
				le.Step = st
			}
			out = append(out, le)
		case eventFailure:
			n, err := strconv.Atoi(a["failures"])
			if err != nil || n < 1 {
				continue // not counted on the terminal (locked out already, say)
			}
			out = append(out, store.MFALoginEvent{Kind: store.MFALoginFailure, User: user, Failures: min(n, maxFailuresSeen)})
		case eventLockout:
			until, err := time.Parse(time.RFC3339, a["until"])
			if err != nil {
				continue // the TPM's own lockout: not a lock-out of the user
			}
			if limit := now.Add(maxFleetLockout); until.After(limit) {
				until = limit
			}
			if until.After(now) {
				out = append(out, store.MFALoginEvent{Kind: store.MFALoginLockout, User: user, Until: until})
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	changed, err := s.store.RecordMFALogins(ctx, deviceID, out, now)
	if err != nil {
		return err
	}
	if changed {
		s.forgetMFAGeneration()
	}
	return nil
}
