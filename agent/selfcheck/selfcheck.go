// Package selfcheck is the "agent" control: the agent checking itself. It
// reports the agent version, the policy version in force, the state of the
// event spool and the clock skew against the server. It is ENFORCED when a
// policy is loaded, the clock is within the allowed skew and the spool loses
// nothing; DEGRADED when the clock is off, events were refused and not yet
// reported, or the spool's file system is full; FAILED when the oldest
// unsent event is older than spool_max_unsent_age (the server's evidence is
// that far behind the terminal).
//
// Settings (policy control "agent"):
//
//	max_clock_skew        Go duration, default "60s": the largest skew that
//	                      still counts as ENFORCED. Certificates, TOTP codes
//	                      and audit timestamps all depend on a correct clock.
//	spool_max_bytes       bytes (a number, or with KiB, MiB, GiB), default
//	                      64MiB, at least 128KiB: the spool's size on disk.
//	spool_max_records     events held, default 100000, at least 16.
//	spool_max_unsent_age  Go duration, default "72h": older unsent events
//	                      make the control FAILED.
package selfcheck

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// DefaultMaxClockSkew is the skew allowed when the policy sets none.
const DefaultMaxClockSkew = 60 * time.Second

// SettingMaxClockSkew is the policy setting that overrides it.
const SettingMaxClockSkew = "max_clock_skew"

// SettingRequireTPMKey makes a device key outside a TPM a problem.
const SettingRequireTPMKey = policy.SettingRequireTPMKey

// Spool settings and defaults (see the package comment).
const (
	SettingSpoolMaxBytes       = "spool_max_bytes"
	SettingSpoolMaxRecords     = "spool_max_records"
	SettingSpoolMaxUnsentAge   = "spool_max_unsent_age"
	DefaultSpoolMaxUnsentAge   = 72 * time.Hour
	maxSpoolBytesSetting       = 16 << 30
	maxSpoolRecordsSetting     = 10_000_000
	minSpoolMaxUnsentAgeSeting = time.Minute
)

// Spool is what the check reads from, and sets on, the event spool
// (agent/spool implements it).
type Spool interface {
	Stats() spool.Stats
	SetLimits(maxBytes int64, maxRecords int) error
}

// Config configures the check.
type Config struct {
	// Version is the agent version (buildinfo.Version).
	Version string
	// Spool is the event spool. Nil leaves its evidence out.
	Spool Spool
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
	maxUnsentAge  time.Duration
	dropsSeen     uint64 // spool's DroppedSinceOpen at the last status: more is news
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
	return &Check{cfg: cfg, maxSkew: DefaultMaxClockSkew, maxUnsentAge: DefaultSpoolMaxUnsentAge}
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
	lim, lerr := SpoolLimitsFrom(p.GetSettings())
	if lerr == nil && c.cfg.Spool != nil {
		lerr = c.cfg.Spool.SetLimits(lim.MaxBytes, lim.MaxRecords)
	}
	c.mu.Lock()
	c.maxSkew, c.requireTPM, c.maxUnsentAge = max, req, lim.MaxUnsentAge
	c.settingErr = errors.Join(err, rerr, lerr)
	c.mu.Unlock()
	return nil
}

// SpoolLimits are the spool settings; zero sizes mean the spool's defaults.
type SpoolLimits struct {
	MaxBytes     int64
	MaxRecords   int
	MaxUnsentAge time.Duration
}

// SpoolLimitsFrom reads the spool settings. An invalid value yields the
// default for it and an error to report (the agent keeps running on the
// defaults, and the control says why it is DEGRADED).
func SpoolLimitsFrom(settings map[string]string) (SpoolLimits, error) {
	l := SpoolLimits{MaxUnsentAge: DefaultSpoolMaxUnsentAge}
	var errs []error
	if v, ok := settings[SettingSpoolMaxBytes]; ok {
		n, err := parseBytes(v)
		if err != nil || n < 128<<10 || n > maxSpoolBytesSetting {
			errs = append(errs, fmt.Errorf("setting %s=%q: want a size from 128KiB to 16GiB (e.g. \"64MiB\"); using the default", SettingSpoolMaxBytes, v))
		} else {
			l.MaxBytes = n
		}
	}
	if v, ok := settings[SettingSpoolMaxRecords]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 16 || n > maxSpoolRecordsSetting {
			errs = append(errs, fmt.Errorf("setting %s=%q: want a number from 16 to %d; using the default", SettingSpoolMaxRecords, v, maxSpoolRecordsSetting))
		} else {
			l.MaxRecords = n
		}
	}
	if v, ok := settings[SettingSpoolMaxUnsentAge]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < minSpoolMaxUnsentAgeSeting {
			errs = append(errs, fmt.Errorf("setting %s=%q: want a duration of at least 1m (e.g. \"72h\"); using %v", SettingSpoolMaxUnsentAge, v, DefaultSpoolMaxUnsentAge))
		} else {
			l.MaxUnsentAge = d
		}
	}
	return l, errors.Join(errs...)
}

// parseBytes reads "65536", "512KiB", "64MiB" or "1GiB".
func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
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
	st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Evidence: ev}
	var problems, failures []control.Detail
	if c.cfg.Spool != nil {
		problems, failures = c.spoolStatus(ev)
	}
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
	switch {
	case len(failures) > 0:
		st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
		control.Join(append(failures, problems...)).Apply(st)
	case len(problems) > 0:
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.Join(problems).Apply(st)
	default:
		control.SetDetail(st, "detail.agent.running", strconv.FormatInt(c.policyVersion, 10))
	}
	return st, nil
}

// spoolStatus adds the spool's evidence to ev and says what is wrong with
// it: problems make the control DEGRADED, failures FAILED. The caller holds
// c.mu.
func (c *Check) spoolStatus(ev map[string]string) (problems, failures []control.Detail) {
	s := c.cfg.Spool.Stats()
	now := c.cfg.Now()
	ev["spool_backlog"] = strconv.Itoa(s.Backlog)
	ev["spool_bytes"] = strconv.FormatInt(s.Bytes, 10)
	ev["spool_max_bytes"] = strconv.FormatInt(s.MaxBytes, 10)
	ev["spool_max_records"] = strconv.Itoa(s.MaxRecords)
	ev["spool_reserve_bytes"] = strconv.FormatInt(s.ReserveBytes, 10)
	ev["spool_dropped_unreported"] = strconv.FormatUint(s.Dropped, 10)
	ev["spool_max_unsent_age"] = c.maxUnsentAge.String()
	if s.FreeBytes >= 0 {
		ev["spool_free_bytes"] = strconv.FormatInt(s.FreeBytes, 10)
	}
	if !s.Oldest.IsZero() {
		age := max(now.Sub(s.Oldest), 0).Truncate(time.Second)
		ev["spool_oldest_unsent_age"] = age.String()
		if age > c.maxUnsentAge {
			failures = append(failures, control.D("detail.agent.spool-stale", age.String(), c.maxUnsentAge.String()))
		}
	}
	if !s.LastDrop.IsZero() {
		ev["spool_last_drop"] = s.LastDrop.UTC().Format(time.RFC3339)
	}
	// Drops not yet reported, or reported since the last status: at least
	// one report says DEGRADED; the events_dropped event and its incident
	// (events-lost) keep the record.
	switch {
	case s.Dropped > 0:
		problems = append(problems, control.D("detail.agent.spool-dropped", strconv.FormatUint(s.Dropped, 10)))
	case s.DroppedSinceOpen > c.dropsSeen:
		problems = append(problems, control.D("detail.agent.spool-dropped-reported", s.LastDrop.UTC().Format(time.RFC3339)))
	}
	c.dropsSeen = s.DroppedSinceOpen
	if s.ReserveBytes < spool.ReserveSize || s.FreeBytes >= 0 && s.FreeBytes < spool.ReserveSize {
		problems = append(problems, control.D("detail.agent.spool-disk-full", strconv.FormatInt(max(s.FreeBytes, 0), 10)))
	}
	return problems, failures
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
