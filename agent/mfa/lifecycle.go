package mfa

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
)

// This file holds what the server's helpdesk and officer actions mean on
// the terminal (docs/mfa.md): temporary codes, unlocks and grace. All of
// it arrives in the bundle; none of it needs the server at login time.

// checkTempCode accepts one of the user's temporary codes once, before it
// expires, and records its ID in st. It returns the code's ID and "" on
// success, else a reason for the event. Every candidate is compared in
// constant time.
func (v *Verifier) checkTempCode(user, norm string, st *userState, now time.Time) (string, string) {
	reason := "no_such_code"
	for _, c := range v.bundle.GetTempCodes() {
		if c.GetUser() != user {
			continue
		}
		// argon2id (one run) for codes issued since issue 14 item 8,
		// SHA-256 under the code's salt for older ones; constant time
		// either way.
		if !mfabundle.VerifyCode(c.GetHash(), c.GetSalt(), norm) {
			continue
		}
		_, used := st.UsedTemp[c.GetId()]
		switch {
		case c.GetDeviceId() != "" && c.GetDeviceId() != v.bundle.GetDeviceId():
			// Bound to another terminal (a privileged user's code): the
			// server does not send it here, and this terminal refuses it
			// should it arrive anyway.
			reason = "code_other_device"
		case used:
			reason = "code_used"
		case c.GetExpiresAt() == nil || !now.Before(c.GetExpiresAt().AsTime()):
			reason = "code_expired"
		default:
			if st.UsedTemp == nil {
				st.UsedTemp = map[string]time.Time{}
			}
			st.UsedTemp[c.GetId()] = c.GetExpiresAt().AsTime()
			return c.GetId(), ""
		}
	}
	return "", reason
}

// graceApplies says whether user, who has no factor here, may log in
// without one: the policy's grace_until is in the future and names the
// user (or every user).
func (v *Verifier) graceApplies(user string, now time.Time) bool {
	b := v.bundle
	if b.GetGraceUntil() == nil || !now.Before(b.GetGraceUntil().AsTime()) {
		return false
	}
	return slices.Contains(b.GetGraceUsers(), "*") || slices.Contains(b.GetGraceUsers(), user)
}

// methodAllowed says whether the policy allows method m, a policy method
// name (policy.MFAMethodTOTP, policy.MFAMethodTPMPIN). A policy that names
// none allows both: a PIN key exists only where root enrolled one on the
// terminal (mamori-agent mfa pin-enroll).
func (v *Verifier) methodAllowed(m string) bool {
	ms := v.bundle.GetMethods()
	if len(ms) == 0 {
		return m == policy.MFAMethodTOTP || m == policy.MFAMethodTPMPIN
	}
	return slices.Contains(ms, m)
}

// unlockGen is the bundle's unlock counter for user on this device.
func (v *Verifier) unlockGen(user string) int64 {
	for _, u := range v.bundle.GetUnlocks() {
		if u.GetUser() == user {
			return u.GetGeneration()
		}
	}
	return 0
}

// applyBundleState brings the local state in line with a new bundle: a
// higher unlock counter clears the user's failures and lock-out; used
// temporary codes that have expired are forgotten; a user who now has
// factors is no longer a grace user. v.mu is held.
func (v *Verifier) applyBundleState(ctx context.Context) {
	changed := false
	for _, u := range v.bundle.GetUnlocks() {
		name, gen := u.GetUser(), u.GetGeneration()
		st := v.state[name]
		if st == nil {
			// Nothing is locked here; remember the counter so only a later
			// unlock counts.
			v.state[name] = &userState{UnlockGen: gen}
			changed = true
			continue
		}
		if gen <= st.UnlockGen {
			continue
		}
		wasLocked := st.Failures > 0 || !st.LockedUntil.IsZero()
		st.Failures, st.Lockouts, st.LockedUntil, st.UnlockGen = 0, 0, time.Time{}, gen
		changed = true
		if wasLocked {
			v.emit(ctx, KindUnlocked, map[string]string{"user": name, "unlock": strconv.FormatInt(gen, 10)})
		}
	}
	now := v.cfg.Now()
	for name, st := range v.state {
		for id, exp := range st.UsedTemp {
			if now.After(exp.Add(time.Hour)) { // an hour of slack for the clock
				delete(st.UsedTemp, id)
				changed = true
			}
		}
		if !st.GraceLoginAt.IsZero() && v.user(name) != nil {
			st.GraceLoginAt = time.Time{}
			changed = true
		}
		// Entries older agents kept for names this terminal does not know
		// (made-up names' failures, issue #21 item 7) go; what protects a
		// login (a used step or code, a grace login, a lock-out still
		// running, an unlock counter) stays.
		if st.LastStep == 0 && len(st.UsedTemp) == 0 && st.GraceLoginAt.IsZero() && !now.Before(st.LockedUntil) &&
			v.unlockGen(name) == 0 && !v.knows(name, now) {
			delete(v.state, name)
			changed = true
		}
	}
	if changed {
		if err := v.saveState(); err != nil {
			v.log.ErrorContext(ctx, "mfa state not saved after a new bundle", "error", err)
		}
	}
}

// GraceStatus is what the login-mfa control reports about grace logins.
type GraceStatus struct {
	// Until is the end of the grace period in the bundle; zero for none.
	Until time.Time
	// Active: now is before Until.
	Active bool
	// Logins are the users who logged in without a factor under grace and
	// still have none here, with their last such login; empty once grace
	// is over (nobody gets in that way any more).
	Logins map[string]time.Time
}

// Grace reports grace: a terminal where Logins is not empty lets users in
// with a password alone, so login-mfa is not compliant there while the
// grace period lasts.
func (v *Verifier) Grace() GraceStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	g := GraceStatus{Logins: map[string]time.Time{}}
	if gu := v.bundle.GetGraceUntil(); gu != nil {
		g.Until = gu.AsTime()
		g.Active = v.cfg.Now().Before(g.Until)
	}
	if !g.Active {
		return g
	}
	for name, st := range v.state {
		if !st.GraceLoginAt.IsZero() && v.user(name) == nil {
			g.Logins[name] = st.GraceLoginAt
		}
	}
	return g
}

// GraceUsers lists, sorted, the users in Grace().Logins.
func (v *Verifier) GraceUsers() []string {
	var us []string
	for u := range v.Grace().Logins {
		us = append(us, u)
	}
	slices.Sort(us)
	return us
}

// EnrolledUsers lists the users with factors here (the bundle's users).
func (v *Verifier) EnrolledUsers() []string { return v.Users() }

// Methods lists the methods the policy allows ("totp" when it names none).
func (v *Verifier) Methods() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ms := v.bundle.GetMethods(); len(ms) > 0 {
		return slices.Clone(ms)
	}
	return []string{methodTOTP}
}
