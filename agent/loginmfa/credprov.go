package loginmfa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Windows: login-mfa is mamori-cp.dll (agent/credprov), a credential
// provider that asks for the second factor and a filter that hides the
// other tiles. Enforce registers both (COM classes under
// HKLM\SOFTWARE\Classes\CLSID, the provider under …\Authentication\Credential
// Providers, the filter under …\Credential Provider Filters) and the
// DLL's settings, and reads every value back each round: a value changed
// or removed is a drift event (KindDrift) and is written again. Monitor,
// or a policy without the control, removes them all, the filter first,
// so the in-box password tile is back before mamori's goes. Before it
// registers anything the control checks the DLL's SHA-256 against the
// one the MSI recorded (or the policy's module_sha256), that the agent's
// pipe answers, and that at least one user allowed on this terminal is
// enrolled — otherwise it refuses (FAILED, saying which) rather than
// lock everyone out.

// The CLSIDs of mamori-cp.dll (agent/credprov/src/cpdefs.h: change both or
// neither).
const (
	ProviderCLSID = "{5b1f6e0a-3c2d-4e7b-9a41-6d2e8f10b357}"
	FilterCLSID   = "{5b1f6e0b-3c2d-4e7b-9a41-6d2e8f10b357}"
)

// Registry keys (under HKLM) the control manages.
const (
	authKey           = `SOFTWARE\Microsoft\Windows\CurrentVersion\Authentication`
	ProviderKey       = authKey + `\Credential Providers\` + ProviderCLSID
	FilterKey         = authKey + `\Credential Provider Filters\` + FilterCLSID
	providerClassKey  = `SOFTWARE\Classes\CLSID\` + ProviderCLSID
	filterClassKey    = `SOFTWARE\Classes\CLSID\` + FilterCLSID
	CPSettingsKey     = `SOFTWARE\mamori\CredentialProvider`
	KindDrift         = "login_mfa_drift"
	cpDescription     = "mamori"
	cpThreadingModel  = "Apartment"
	inprocServer      = `\InprocServer32`
	defaultValueLabel = "(default)"
)

// RegValue is one REG_SZ value the control manages (Name "" is the key's
// default value).
type RegValue struct {
	Key, Name, Value string
}

func (v RegValue) String() string {
	n := v.Name
	if n == "" {
		n = defaultValueLabel
	}
	return `HKLM\` + v.Key + `\` + n
}

// CPRegistry is what the control needs of HKLM (registry_windows.go; a
// map in tests). Get reports a missing key or value as ok=false, nil
// error.
type CPRegistry interface {
	Get(key, name string) (value string, ok bool, err error)
	Set(key, name, value string) error
	DeleteKey(key string) error
}

// CredProvOptions wire the Windows side (nil on Linux).
type CredProvOptions struct {
	Registry CPRegistry
	// DLL is the installed mamori-cp.dll (C:\Program Files\mamori\…).
	DLL string
	// MSISHA256 returns the DLL's SHA-256 the MSI recorded.
	MSISHA256 func() (string, error)
	// PipeCheck asks the agent's pipe one question; nil error: it answers.
	PipeCheck func(ctx context.Context) error
	// Pipe, BreakGlass and ServiceSID are written for the DLL when set
	// (tests; production uses the DLL's defaults).
	Pipe, BreakGlass, ServiceSID string
	// Logons reads the Security log's 4624 events for monitor mode's
	// "would have been refused" (winlogonscan.go); nil: not reported.
	Logons LogonLog
}

// WantCredProv is every value enforce writes, in the order written: the
// COM classes and the DLL's settings first, the filter last (so a tile
// is there before the others are hidden).
func WantCredProv(o *CredProvOptions) []RegValue {
	v := []RegValue{
		{providerClassKey, "", "mamori credential provider"},
		{providerClassKey + inprocServer, "", o.DLL},
		{providerClassKey + inprocServer, "ThreadingModel", cpThreadingModel},
		{filterClassKey, "", "mamori credential provider filter"},
		{filterClassKey + inprocServer, "", o.DLL},
		{filterClassKey + inprocServer, "ThreadingModel", cpThreadingModel},
		{CPSettingsKey, "Mode", "enforce"},
	}
	for _, s := range [][2]string{{"Pipe", o.Pipe}, {"BreakGlass", o.BreakGlass}, {"ServiceSID", o.ServiceSID}} {
		if s[1] != "" {
			v = append(v, RegValue{CPSettingsKey, s[0], s[1]})
		}
	}
	return append(v, RegValue{ProviderKey, "", cpDescription}, RegValue{FilterKey, "", cpDescription})
}

// revertKeys are deleted by a revert, in this order: the filter's
// registration first, so the in-box tiles come back before mamori's goes.
var revertKeys = []string{FilterKey, ProviderKey, filterClassKey + inprocServer, filterClassKey,
	providerClassKey + inprocServer, providerClassKey, CPSettingsKey}

// RemoveCredProv deletes every key the control writes, the filter's
// registration first (monitor mode, and `mamori-agent credprov-remove`,
// which the MSI runs before it removes the DLL).
func RemoveCredProv(r CPRegistry) error {
	var errs []error
	for _, k := range revertKeys {
		if err := r.DeleteKey(k); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the credential provider: %w", err)
	}
	return nil
}

// credProvDrift returns the values of want the registry does not hold.
func credProvDrift(r CPRegistry, want []RegValue) ([]RegValue, error) {
	var drift []RegValue
	var errs []error
	for _, w := range want {
		got, ok, err := r.Get(w.Key, w.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok || got != w.Value {
			drift = append(drift, w)
		}
	}
	return drift, errors.Join(errs...)
}

// credProvRegistered reports whether the provider or the filter is
// registered at all.
func credProvRegistered(r CPRegistry) bool {
	for _, k := range []string{ProviderKey, FilterKey} {
		if _, ok, _ := r.Get(k, ""); ok {
			return true
		}
	}
	return false
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 64<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cpPreflight is what must hold before the provider is switched on, and
// what the status checks every round: the DLL is the expected one, the
// pipe answers, someone allowed here is enrolled. Each problem is one
// English sentence; ev gets the evidence.
func (c *Control) cpPreflight(ctx context.Context, s Settings, ev map[string]string) (problems []string, degraded []string) {
	o := c.opt.CredProv
	ev["dll.path"] = o.DLL
	want, from := s.Hashes, "policy"
	if len(want) == 0 && o.MSISHA256 != nil {
		if h, err := o.MSISHA256(); err == nil && sha256RE.MatchString(strings.ToLower(h)) {
			want, from = []string{strings.ToLower(h)}, "msi"
		} else if err != nil {
			ev["dll.expected_error"] = err.Error()
		}
	}
	sum, err := hashFile(o.DLL)
	switch {
	case err != nil:
		ev["dll.sha256"] = "error: " + err.Error()
		problems = append(problems, fmt.Sprintf("%s unreadable: %v (reinstall the mamori agent MSI)", o.DLL, err))
	case len(want) == 0:
		ev["dll.sha256"] = sum
		degraded = append(degraded, "no expected SHA-256 for mamori-cp.dll (the MSI records one; or set module_sha256)")
	default:
		ev["dll.sha256"] = sum
		ev["dll.expected_sha256"] = strings.Join(want, ",")
		ev["dll.expected_from"] = from
		if !slices.Contains(want, sum) {
			problems = append(problems, fmt.Sprintf("%s has SHA-256 %s, not the expected one (reinstall the mamori agent MSI)", o.DLL, sum[:12]))
		}
	}
	if o.PipeCheck == nil {
		ev["pipe"] = "not running"
		problems = append(problems, "the agent's pipe is not running: every code would be refused")
	} else if err := o.PipeCheck(ctx); err != nil {
		ev["pipe"] = "error: " + err.Error()
		problems = append(problems, "the agent's pipe does not answer: "+err.Error())
	} else {
		ev["pipe"] = "answers"
	}
	switch {
	case c.opt.Users == nil:
		ev["enrolled_users"] = "unknown (verifier not running)"
		problems = append(problems, "the MFA verifier is not running")
	default:
		n := len(c.opt.Users())
		ev["enrolled_users"] = strconv.Itoa(n)
		if n == 0 {
			problems = append(problems, "nobody allowed to log in on this terminal is enrolled: enforcing would lock everyone out")
		}
	}
	return problems, degraded
}

// applyCredProv brings the registry in line with the mode (Apply on
// Windows).
func (c *Control) applyCredProv(ctx context.Context, p *mamoriv1.ControlPolicy, s Settings) (string, error) {
	o := c.opt.CredProv
	if p == nil || p.GetMode() != mamoriv1.Mode_MODE_ENFORCE || s.Manual {
		if !credProvRegistered(o.Registry) {
			if s.Manual {
				return "manual: the credential provider is not changed by the agent", nil
			}
			return "credential provider not registered", nil
		}
		if s.Manual {
			return "manual: the credential provider is not changed by the agent", nil
		}
		if err := RemoveCredProv(o.Registry); err != nil {
			return "", err
		}
		return "credential provider and filter removed", nil
	}
	if problems, _ := c.cpPreflight(ctx, s, map[string]string{}); len(problems) > 0 {
		// Refuse, and take back what an earlier round registered: a
		// provider that cannot check codes refuses every logon.
		RemoveCredProv(o.Registry) //nolint:errcheck // best effort; the status reads the registry again
		return "", fmt.Errorf("refused to enforce: %s", strings.Join(problems, "; "))
	}
	want := WantCredProv(o)
	registered := credProvRegistered(o.Registry)
	drift, err := credProvDrift(o.Registry, want)
	if err != nil {
		return "", err
	}
	for _, d := range drift {
		if err := o.Registry.Set(d.Key, d.Name, d.Value); err != nil {
			return "", fmt.Errorf("register the credential provider: %w", err)
		}
	}
	after, err := credProvDrift(o.Registry, want)
	if err != nil {
		return "", err
	}
	if registered && len(drift) > 0 {
		for _, d := range drift {
			attrs := map[string]string{"value": d.String(), "reapplied": strconv.FormatBool(!slices.Contains(after, d))}
			if err := c.opt.Emitter.Emit(ctx, policy.ControlLoginMFA, KindDrift, attrs); err != nil {
				c.opt.Log.ErrorContext(ctx, "login-mfa: drift event not recorded", "error", err)
			}
		}
	}
	if len(after) > 0 {
		return "", fmt.Errorf("registry still differs after writing it (%s): another tool or a group policy is changing it", after[0])
	}
	switch {
	case !registered:
		return "credential provider and filter registered", nil
	case len(drift) > 0:
		return fmt.Sprintf("credential provider re-registered: %d value(s) had drifted", len(drift)), nil
	}
	return "credential provider and filter registered (unchanged)", nil
}

// statusCredProv reports what the registry holds now (Status on Windows).
func (c *Control) statusCredProv(ctx context.Context) *mamoriv1.ControlStatus {
	o := c.opt.CredProv
	c.mu.Lock()
	named, mode, s, setErr, did, applyErr := c.named, c.mode, c.settings, c.setErr, c.lastApply, c.applyErr
	would, logonBad, logonErr := c.wouldRefuse, c.logonBad, c.logonErr
	c.mu.Unlock()
	if !named {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE}
		control.SetDetail(st, "detail.loginmfa.not-named")
		return st
	}
	ev := map[string]string{"platform": "windows"}
	if did != "" {
		ev["credential_provider"] = did
	}
	c.bundleEvidence(ev)
	drift, rerr := credProvDrift(o.Registry, WantCredProv(o))
	registered := credProvRegistered(o.Registry)
	ev["registry"] = "registered"
	switch {
	case rerr != nil:
		ev["registry"] = "error: " + rerr.Error()
	case !registered:
		ev["registry"] = "not registered"
	case len(drift) > 0:
		ev["registry"] = "differs: " + drift[0].String()
	}
	problems, degraded := c.cpPreflight(ctx, s, ev)
	if mode == mamoriv1.Mode_MODE_MONITOR {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_MONITORING, Evidence: ev}
		switch {
		case o.Logons == nil:
			ev["logon_records"] = "not read"
			control.SetDetail(st, "detail.loginmfa.cp-monitor")
		case logonErr != nil:
			ev["logon_records"] = "error: " + logonErr.Error()
			control.SetDetail(st, "detail.loginmfa.cp-monitor")
		default:
			ev["logon_records"] = "security-4624"
			ev["would_refuse"] = strconv.Itoa(would)
			if logonBad > 0 {
				ev["logon_records_unreadable"] = strconv.Itoa(logonBad)
			}
			control.SetDetail(st, "detail.loginmfa.cp-monitor-logons", strconv.Itoa(would))
		}
		if err := errors.Join(setErr, applyErr); err != nil || registered {
			if err == nil {
				err = errors.New("the credential provider is still registered")
			}
			st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
			control.SetDetail(st, "detail.loginmfa.cp-problem", err.Error())
		}
		return st
	}
	var ds []control.Detail
	state := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	fail := func(d control.Detail) { ds, state = append(ds, d), mamoriv1.ControlState_CONTROL_STATE_FAILED }
	if err := errors.Join(setErr, applyErr); err != nil {
		fail(control.D("detail.loginmfa.cp-problem", err.Error()))
	}
	if rerr != nil || !registered || len(drift) > 0 {
		fail(control.D("detail.loginmfa.cp-problem", "registry: "+ev["registry"]))
	}
	for _, p := range problems {
		fail(control.D("detail.loginmfa.cp-problem", p))
	}
	var dd []control.Detail
	for _, d := range degraded {
		dd = append(dd, control.D("detail.loginmfa.cp-problem", d))
	}
	if c.opt.GraceUsers != nil {
		// As on Linux: users let in without a factor under the policy's
		// grace period mean passwords alone still work.
		if grace := c.opt.GraceUsers(); len(grace) > 0 {
			ev["grace_logins"] = strconv.Itoa(len(grace))
			dd = append(dd, control.D("detail.loginmfa.grace", strconv.Itoa(len(grace)), strings.Join(first(grace, 10), ", ")))
		}
	}
	for _, d := range dd {
		ds = append(ds, d)
		if state == mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
			state = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		}
	}
	st := &mamoriv1.ControlStatus{State: state, Evidence: ev}
	control.SetDetail(st, "detail.loginmfa.cp-enforced")
	if len(ds) > 0 {
		control.Join(ds).Apply(st)
	}
	return st
}
