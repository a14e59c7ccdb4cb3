package loginmfa

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
)

// LogonLog reads the Security log's 4624 events (SecurityLog in
// winlogon_windows.go; fixtures in tests).
type LogonLog interface {
	// Latest is the record ID of the newest 4624 event, 0 when there is
	// none.
	Latest(ctx context.Context) (uint64, error)
	// After returns up to max 4624 events with a record ID above after,
	// oldest first, each rendered as XML.
	After(ctx context.Context, after uint64, max int) ([][]byte, error)
}

// maxLogonsPerRound bounds what one round reads and reports; the rest
// waits for the next round.
const maxLogonsPerRound = 500

// scanWinLogons emits mfa_would_refuse for new 4624 events of logons
// through LogonUI by users with no enrolled second factor (monitor mode on
// Windows; the Linux control reads wtmp). The first scan only notes the
// newest record: the control reports logons from the agent's start on,
// as on Linux. A record ID below the one noted means the log was cleared:
// it starts again from the beginning.
func (c *Control) scanWinLogons(ctx context.Context) {
	lg := c.opt.CredProv.Logons
	if lg == nil {
		return
	}
	c.mu.Lock()
	off, initd := c.logonOff, c.logonInit
	c.mu.Unlock()
	latest, err := lg.Latest(ctx)
	if err != nil {
		c.setLogonErr(err)
		return
	}
	switch {
	case !initd:
		c.mu.Lock()
		c.logonOff, c.logonInit, c.logonErr = latest, true, nil
		c.mu.Unlock()
		return
	case latest < off: // cleared
		off = 0
	}
	events, err := lg.After(ctx, off, maxLogonsPerRound)
	if err != nil {
		c.setLogonErr(err)
		return
	}
	var enrolled []string
	if c.opt.Users != nil {
		enrolled = c.opt.Users()
	}
	count, bad := 0, 0
	for _, x := range events {
		l, err := ParseLogonEvent(x)
		if err != nil {
			// One unreadable event does not stop the others; it is counted
			// in the evidence, never reported as a logon.
			bad++
			continue
		}
		if l.RecordID <= off {
			continue // the query's filter is the log's; do not trust it
		}
		if l.ThroughLogonUI() && !enrolledUser(enrolled, l.User) {
			reason := "not_enrolled"
			if c.opt.Users == nil {
				reason = "verifier_not_running"
			}
			attrs := map[string]string{"user": l.User, "domain": l.Domain, "logon_type": logonTypeName(l.LogonType),
				"host": l.IP, "workstation": l.Workstation, "login_at": l.At.Format(time.RFC3339),
				"reason": reason, "source": "security-4624", "record_id": strconv.FormatUint(l.RecordID, 10)}
			if err := c.opt.Emitter.Emit(ctx, policy.ControlLoginMFA, KindWouldRefuse, attrs); err != nil {
				c.opt.Log.ErrorContext(ctx, "login-mfa: event not recorded; retrying next round", "error", err)
				break
			}
			count++
		}
		off = l.RecordID
	}
	c.mu.Lock()
	c.logonOff = off
	c.wouldRefuse += count
	c.logonBad = bad // this round's; an unreadable last event is read again next round
	c.logonErr = nil
	c.mu.Unlock()
}

func (c *Control) setLogonErr(err error) {
	c.mu.Lock()
	c.logonErr = err
	c.mu.Unlock()
	c.opt.Log.Warn("login-mfa: cannot read the Security log's logon events", "error", err)
}

// enrolledUser: Windows account names are case-insensitive; the bundle
// holds the login name (the part the DLL asks the agent about).
func enrolledUser(enrolled []string, user string) bool {
	for _, u := range enrolled {
		if strings.EqualFold(u, user) {
			return true
		}
	}
	return false
}

func logonTypeName(t int) string {
	switch t {
	case 2:
		return "interactive"
	case 7:
		return "unlock"
	case 10:
		return "remote_interactive"
	case 11:
		return "cached_interactive"
	case 12:
		return "cached_remote_interactive"
	case 13:
		return "cached_unlock"
	}
	return strconv.Itoa(t)
}
