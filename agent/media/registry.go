package media

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/media/regpolicy"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// RegistryControl is the media control on Windows: it keeps the
// removable-storage group-policy values (regpolicy) in force, reads them
// back every round, re-applies them when they drifted and reports the drift
// as an event. The decisions are here and run on Linux CI against a map
// store; only regpolicy.Registry touches the real registry.
//
// What registry policy cannot do: it applies per device class, so the
// allow-list (vendor:product:serial) is not honoured on Windows — an
// allow-listed stick is read-only like the others, and the status says so.
// docs/windows.md describes the gap and what would close it.
type RegistryControl struct {
	o RegistryOptions

	mu       sync.Mutex
	enforce  bool
	want     regpolicy.State
	settings Settings
	parseErr error
	applyErr error
	lastOK   time.Time
}

// RegistryOptions configure a RegistryControl.
type RegistryOptions struct {
	// Store is the registry (regpolicy.Registry on Windows) or a fake.
	Store   regpolicy.Store
	Emitter control.Emitter
	Log     *slog.Logger
	Now     func() time.Time
}

var _ control.Control = (*RegistryControl)(nil)

// NewRegistry returns the registry-backed media control.
func NewRegistry(o RegistryOptions) *RegistryControl {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &RegistryControl{o: o, settings: DefaultSettings()}
}

// Name is "media".
func (r *RegistryControl) Name() string { return policy.ControlMedia }

// regMode maps a media action to a registry mode.
func regMode(a Action) regpolicy.Mode {
	switch a {
	case ActionAllow:
		return regpolicy.ModeAllow
	case ActionBlock:
		return regpolicy.ModeBlock
	}
	return regpolicy.ModeReadOnly // read-only, and anything unknown: fail closed
}

// Apply computes the wanted registry values. In monitor mode nothing is
// written; in enforce mode the values are written (or re-written when they
// drifted) and every difference found becomes an event. Invalid settings
// are an error and the defaults are enforced meanwhile (fail closed).
func (r *RegistryControl) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	s, perr := ParseSettings(p.GetSettings())
	if perr != nil {
		s = DefaultSettings()
	}
	want, err := regpolicy.Desired(regpolicy.Settings{Storage: regMode(s.Storage), Optical: regMode(s.Optical), MTP: regMode(s.MTP)})
	if err != nil {
		return err
	}
	enforce := p.GetMode() == mamoriv1.Mode_MODE_ENFORCE
	r.mu.Lock()
	r.enforce, r.want, r.settings, r.parseErr = enforce, want, s, perr
	r.mu.Unlock()
	if !enforce || r.o.Store == nil {
		return perr
	}
	drift, aerr := regpolicy.Enforce(ctx, r.o.Store, want)
	for _, d := range drift {
		r.emit(ctx, "policy_drift", map[string]string{"value": d.String(), "reapplied": strconv.FormatBool(aerr == nil)})
	}
	r.mu.Lock()
	r.applyErr = aerr
	if aerr == nil {
		r.lastOK = r.o.Now()
	}
	r.mu.Unlock()
	return errors.Join(perr, aerr)
}

// Status reads the values back and says whether the policy holds.
func (r *RegistryControl) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	r.mu.Lock()
	enforce, want, s, perr, aerr := r.enforce, r.want, r.settings, r.parseErr, r.applyErr
	r.mu.Unlock()
	st := &mamoriv1.ControlStatus{
		Control:    policy.ControlMedia,
		Mode:       mamoriv1.Mode_MODE_MONITOR,
		ObservedAt: timestamppb.New(r.o.Now()),
		Evidence: map[string]string{
			"mechanism": "registry RemovableStorageDevices policy",
			"storage":   string(s.Storage), "optical": string(s.Optical), "mtp": string(s.MTP),
		},
	}
	if enforce {
		st.Mode = mamoriv1.Mode_MODE_ENFORCE
	}
	if len(s.Allow) > 0 {
		st.Evidence["allow_list"] = "not honoured on Windows (registry policy is per class)"
	}
	if len(s.Exceptions) > 0 {
		st.Evidence["exceptions"] = strconv.Itoa(len(s.Exceptions)) + " not honoured on Windows (registry policy is per class)"
	}
	if r.o.Store == nil || want == nil {
		st.State = mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE
		control.SetDetail(st, "detail.media.registry-none")
		return st, nil
	}
	got, err := r.o.Store.Read(ctx)
	if err != nil {
		st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
		control.SetDetail(st, "detail.media.registry-read-error", err.Error()) // the error stays English
		return st, nil
	}
	drift := regpolicy.Drift(want, got)
	st.Evidence["managed_values"] = strconv.Itoa(len(got))
	switch {
	case !enforce:
		st.State = mamoriv1.ControlState_CONTROL_STATE_MONITORING
		control.SetDetail(st, "detail.media.registry-monitor", strconv.Itoa(len(drift)))
	case len(drift) > 0:
		names := make([]string, 0, len(drift))
		for _, d := range drift {
			names = append(names, d.String())
		}
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.SetDetail(st, "detail.media.registry-drift", strings.Join(names, "; "))
	case aerr != nil:
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.SetDetail(st, "detail.media.registry-apply-error", aerr.Error()) // the error stays English
	case perr != nil:
		st.State = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		control.SetDetail(st, "detail.media.registry-invalid-settings", perr.Error())
	case len(s.Allow) > 0:
		st.State = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		control.SetDetail(st, "detail.media.registry-allow-readonly")
	default:
		st.State = mamoriv1.ControlState_CONTROL_STATE_ENFORCED
		control.SetDetail(st, "detail.media.registry-enforced")
	}
	return st, nil
}

func (r *RegistryControl) emit(ctx context.Context, kind string, attrs map[string]string) {
	if r.o.Emitter == nil {
		return
	}
	if err := r.o.Emitter.Emit(ctx, policy.ControlMedia, kind, attrs); err != nil {
		r.o.Log.WarnContext(ctx, "media: event not recorded", "kind", kind, "error", err)
	}
}

// Close releases nothing; it lets the registry control stand where the
// Linux control (which owns a netlink socket) stands.
func (r *RegistryControl) Close() error { return nil }

// Closer is a control that holds resources until Close.
type Closer interface {
	control.Control
	Close() error
}
