package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mamori-dev/mamori/internal/atomicfile"
)

// StateFile is the file, in Options.StateDir, where the control keeps what
// must outlive the agent: the ruleset in force (Boot loads it before the
// network comes up) and the interface baseline of no_new_interfaces.
const StateFile = "isolation.json"

// savedState is StateFile's content.
type savedState struct {
	Version int `json:"version"`
	// Rules is the ruleset mamori last applied; empty when no table is in
	// force (monitor mode, or the control not in the policy).
	Rules []Rule `json:"rules,omitempty"`
	// ForwardingOff: the policy in force does not allow IP forwarding.
	ForwardingOff bool `json:"forwarding_off,omitempty"`
	// Baseline is the interfaces at the first observation under
	// no_new_interfaces; an interface that appears later, the agent
	// running or not, is a finding.
	Baseline []string  `json:"baseline,omitempty"`
	SavedAt  time.Time `json:"saved_at"`
}

const stateVersion = 1

func loadState(dir string) (savedState, error) {
	var st savedState
	if dir == "" {
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return savedState{}, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	if st.Version != stateVersion {
		return savedState{}, fmt.Errorf("%s: version %d, this agent knows %d", filepath.Join(dir, StateFile), st.Version, stateVersion)
	}
	for _, r := range st.Rules {
		if !slices.Contains(Chains, r.Chain) {
			return savedState{}, fmt.Errorf("%s: rule in unknown chain %q", filepath.Join(dir, StateFile), clip(r.Chain))
		}
	}
	return st, nil
}

// persist writes what must outlive the agent. Failures are logged and kept
// as a note for the status: enforcement goes on without them.
func (c *Control) persist(ctx context.Context) {
	if c.o.StateDir == "" {
		return
	}
	c.mu.Lock()
	st := savedState{Version: stateVersion, Rules: c.applied, ForwardingOff: c.applied != nil && !c.settings.AllowForwarding,
		SavedAt: time.Now().UTC()}
	for n := range c.baseline {
		st.Baseline = append(st.Baseline, n)
	}
	c.mu.Unlock()
	slices.Sort(st.Baseline)
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = os.MkdirAll(c.o.StateDir, 0o700)
	}
	if err == nil {
		err = atomicfile.Write(filepath.Join(c.o.StateDir, StateFile), b, 0o600)
	}
	c.mu.Lock()
	c.persistErr = err
	if err == nil {
		c.diskRules = len(st.Rules) > 0
	}
	c.mu.Unlock()
	if err != nil {
		c.log.ErrorContext(ctx, "could not save the isolation ruleset for the next boot", "error", err)
	}
}

// BootResult says what Boot did.
type BootResult struct {
	Rules         int  // rules put in place; 0: none saved
	ForwardingOff bool // IP forwarding was on and has been switched off
}

// Boot puts the ruleset the agent last applied back in place and, when
// that policy did not allow IP forwarding, switches forwarding off. It is
// for `mamori-agent isolation-boot`, run by a unit ordered before
// network-pre.target, so that nothing gets through between boot and the
// agent's start (the nftables table does not survive a reboot). Nothing
// saved — monitor mode, the control not in the policy, a new terminal —
// means nothing to do. A saved state it cannot read is an error and
// changes nothing: the agent reports at its start.
func Boot(ctx context.Context, o Options) (BootResult, error) {
	if o.StateDir == "" {
		return BootResult{}, errors.New("isolation boot: no state directory")
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	st, err := loadState(o.StateDir)
	if err != nil {
		return BootResult{}, fmt.Errorf("isolation boot: %w", err)
	}
	if len(st.Rules) == 0 {
		return BootResult{}, nil
	}
	sys, err := newSystem(o)
	if err != nil {
		return BootResult{}, err
	}
	fw := sys.firewall()
	if fw == nil {
		return BootResult{}, fmt.Errorf("isolation boot: %w here", errors.ErrUnsupported)
	}
	if err := fw.apply(ctx, st.Rules); err != nil {
		return BootResult{}, fmt.Errorf("isolation boot: apply table inet %s: %w", TableName, err)
	}
	res := BootResult{Rules: len(st.Rules)}
	if st.ForwardingOff {
		fwd, err := sys.forwarding()
		if err != nil && !errors.Is(err, errNotObserved) {
			return res, fmt.Errorf("isolation boot: read IP forwarding: %w", err)
		}
		if fwd.On() {
			if err := sys.disableForwarding(fwd); err != nil {
				return res, fmt.Errorf("isolation boot: switch IP forwarding off: %w", err)
			}
			res.ForwardingOff = true
		}
	}
	return res, nil
}
