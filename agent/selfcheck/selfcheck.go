// Package selfcheck is the "agent" control: the agent checking itself. It
// reports the agent version, the policy version in force, the spool backlog
// and the clock skew against the server, and is ENFORCED when a policy is
// loaded and the clock is within the allowed skew, DEGRADED otherwise.
//
// Settings (policy control "agent"):
//
//	max_clock_skew   Go duration, default "60s": the largest skew that still
//	                 counts as ENFORCED. Certificates, TOTP codes and audit
//	                 timestamps all depend on a correct clock.
package selfcheck

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// DefaultMaxClockSkew is the skew allowed when the policy sets none.
const DefaultMaxClockSkew = 60 * time.Second

// SettingMaxClockSkew is the policy setting that overrides it.
const SettingMaxClockSkew = "max_clock_skew"

// SettingRequireTPMKey makes a device key outside a TPM a problem.
const SettingRequireTPMKey = policy.SettingRequireTPMKey

// Config configures the check.
type Config struct {
	// Version is the agent version (buildinfo.Version).
	Version string
	// Backlog returns the number of events waiting in the spool. Nil
	// leaves the evidence out.
	Backlog func() int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// KeyStorage returns where the device key lives ("tpm" or "file").
	// Nil leaves the evidence out and require_tpm_key unchecked.
	KeyStorage func() string
}

// Check is the agent self-check control. It is safe for concurrent use.
type Check struct {
	cfg Config

	mu            sync.Mutex
	maxSkew       time.Duration
	requireTPM    bool
	settingErr    error
	policyVersion int64
	skew          time.Duration
	rtt           time.Duration
	skewAt        time.Time
	skewKnown     bool
}

// New returns a check.
func New(cfg Config) *Check {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Check{cfg: cfg, maxSkew: DefaultMaxClockSkew}
}

// Name is "agent".
func (c *Check) Name() string { return policy.ControlAgent }

// SetPolicyVersion records the version of the policy in force (0: none).
func (c *Check) SetPolicyVersion(v int64) {
	c.mu.Lock()
	c.policyVersion = v
	c.mu.Unlock()
}

// ObserveServerTime records the server's clock from a report exchange: the
// request left at sent, the answer came at received (both local clock, with
// monotonic readings), and the server stamped serverTime. The server's
// stamp is compared with the midpoint of the round trip.
func (c *Check) ObserveServerTime(sent, received, serverTime time.Time) {
	skew, rtt := Skew(sent, received, serverTime)
	c.mu.Lock()
	c.skew, c.rtt, c.skewAt, c.skewKnown = skew, rtt, received, true
	c.mu.Unlock()
}

// Skew returns how far the local clock is behind the server (positive:
// local clock slow) measured at the midpoint of the round trip, and the
// round-trip time.
func Skew(sent, received, serverTime time.Time) (skew, rtt time.Duration) {
	rtt = received.Sub(sent)
	if rtt < 0 {
		rtt = 0
	}
	mid := sent.Add(rtt / 2)
	return serverTime.Sub(mid), rtt
}

// Apply reads the settings.
func (c *Check) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	max, err := MaxClockSkew(p.GetSettings())
	req, rerr := RequireTPMKey(p.GetSettings())
	c.mu.Lock()
	c.maxSkew, c.requireTPM, c.settingErr = max, req, errors.Join(err, rerr)
	c.mu.Unlock()
	return nil
}

// RequireTPMKey reads require_tpm_key from the agent control's settings
// (see policy.RequireTPMKey).
func RequireTPMKey(settings map[string]string) (bool, error) {
	return policy.RequireTPMKey(&mamoriv1.Policy{Controls: map[string]*mamoriv1.ControlPolicy{
		policy.ControlAgent: {Settings: settings},
	}})
}

// MaxClockSkew reads max_clock_skew from settings; an invalid value yields
// the default and an error to report.
func MaxClockSkew(settings map[string]string) (time.Duration, error) {
	v, ok := settings[SettingMaxClockSkew]
	if !ok {
		return DefaultMaxClockSkew, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return DefaultMaxClockSkew, fmt.Errorf("setting %s=%q is not a positive duration (e.g. \"60s\"); using %v",
			SettingMaxClockSkew, v, DefaultMaxClockSkew)
	}
	return d, nil
}

// Status reports the check's state and evidence.
func (c *Check) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := map[string]string{
		"agent_version":  c.cfg.Version,
		"policy_version": strconv.FormatInt(c.policyVersion, 10),
		"max_clock_skew": c.maxSkew.String(),
	}
	if c.cfg.Backlog != nil {
		ev["spool_backlog"] = strconv.Itoa(c.cfg.Backlog())
	}
	st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Evidence: ev}
	var problems []control.Detail
	if c.policyVersion <= 0 {
		problems = append(problems, control.D("detail.agent.no-policy"))
	}
	if c.skewKnown {
		ev["clock_skew_ms"] = strconv.FormatInt(c.skew.Milliseconds(), 10)
		ev["rtt_ms"] = strconv.FormatInt(c.rtt.Milliseconds(), 10)
		ev["clock_skew_measured_at"] = c.skewAt.UTC().Format(time.RFC3339)
		if abs(c.skew) >= c.maxSkew {
			problems = append(problems, control.D("detail.agent.clock-skew",
				abs(c.skew).Round(time.Second).String(), c.maxSkew.String()))
		}
	} else {
		// Not measured is not known to be wrong: the first report after a
		// start carries no measurement yet.
		ev["clock_skew_ms"] = "unknown"
	}
	if c.cfg.KeyStorage != nil {
		ks := c.cfg.KeyStorage()
		ev["key_storage"] = ks
		if c.requireTPM && ks != "tpm" {
			problems = append(problems, control.D("detail.agent.tpm-required"))
		}
	}
	if c.settingErr != nil {
		problems = append(problems, control.D("detail.agent.setting-error", c.settingErr.Error())) // the error stays English
	}
	if len(problems) > 0 {
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.Join(problems).Apply(st)
	} else {
		control.SetDetail(st, "detail.agent.running", strconv.FormatInt(c.policyVersion, 10))
	}
	return st, nil
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
