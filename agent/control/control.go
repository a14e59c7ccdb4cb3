// Package control is the seam every agent control plugs into: the media,
// login-mfa and isolation controls and the agent's own self-check.
//
// A Control applies its part of the policy and reports what it observed.
// A Set runs all controls each round with a per-control timeout and panic
// containment — one failing control reports FAILED and never stops the
// others — and emits a "state_changed" event whenever a control's state
// differs from the previous round. Those events are the state changes that
// the daemon spools durably.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// KindStateChanged is the event kind the Set emits when a control's state
// changes. Its attributes are "from", "to" and "detail".
const KindStateChanged = "state_changed"

// Emitter records an event about a control. The daemon backs it with the
// durable spool; a control receives one at construction.
type Emitter interface {
	Emit(ctx context.Context, control, kind string, attrs map[string]string) error
}

// Control is one enforcement or self-check.
type Control interface {
	// Name is the control's policy key (see internal/policy).
	Name() string
	// Apply brings the system in line with p. p is nil when the policy does
	// not name this control. Apply is called every round with the policy in
	// force and must be idempotent.
	Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error
	// Status reports what the control observes now, with evidence. The Set
	// fills in the control name, mode and observation time.
	Status(ctx context.Context) (*mamoriv1.ControlStatus, error)
}

// Config configures a Set.
type Config struct {
	// Timeout bounds each Apply and each Status call.
	Timeout time.Duration
	// Emitter receives state_changed events. Required.
	Emitter Emitter
	// Log receives failures. Nil discards.
	Log *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with a 10 s timeout; set Emitter.
func DefaultConfig() Config { return Config{Timeout: 10 * time.Second} }

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("control: timeout must be positive"))
	}
	if c.Emitter == nil {
		errs = append(errs, errors.New("control: an emitter is required"))
	}
	return errors.Join(errs...)
}

// Set runs a fixed list of controls.
type Set struct {
	cfg      Config
	controls []Control

	mu        sync.Mutex
	busy      map[string]bool // a call that timed out is still running
	last      map[string]observed
	applyErrs map[string]error
	modes     map[string]mamoriv1.Mode
}

type observed struct {
	state  mamoriv1.ControlState
	detail string
}

// NewSet builds a Set. Control names must be unique and non-empty.
func NewSet(cfg Config, controls ...Control) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	seen := map[string]bool{}
	for _, c := range controls {
		if c == nil || c.Name() == "" {
			return nil, errors.New("control: a control has no name")
		}
		if seen[c.Name()] {
			return nil, fmt.Errorf("control: %q added twice", c.Name())
		}
		seen[c.Name()] = true
	}
	return &Set{
		cfg:       cfg,
		controls:  slices.Clone(controls),
		busy:      map[string]bool{},
		last:      map[string]observed{},
		applyErrs: map[string]error{},
		modes:     map[string]mamoriv1.Mode{},
	}, nil
}

// Names returns the control names in order.
func (s *Set) Names() []string {
	names := make([]string, len(s.controls))
	for i, c := range s.controls {
		names[i] = c.Name()
	}
	return names
}

// Apply applies p to every control, concurrently, each bounded by the
// timeout. A control whose Apply fails reports FAILED in the next Status
// round. The returned error joins every failure, for logging.
func (s *Set) Apply(ctx context.Context, p *mamoriv1.Policy) error {
	errs := make([]error, len(s.controls))
	var wg sync.WaitGroup
	for i, c := range s.controls {
		cp := p.GetControls()[c.Name()]
		s.mu.Lock()
		s.modes[c.Name()] = cp.GetMode()
		s.mu.Unlock()
		wg.Go(func() {
			err := s.call(ctx, c, "apply", func(ctx context.Context) error { return c.Apply(ctx, cp) })
			s.mu.Lock()
			s.applyErrs[c.Name()] = err
			s.mu.Unlock()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.Name(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Status collects every control's status, concurrently, and emits a
// state_changed event for each control whose state differs from the last
// round (including the first observation after start, from "UNKNOWN").
// It always returns one status per control, in order.
func (s *Set) Status(ctx context.Context) []*mamoriv1.ControlStatus {
	out := make([]*mamoriv1.ControlStatus, len(s.controls))
	var wg sync.WaitGroup
	for i, c := range s.controls {
		wg.Go(func() { out[i] = s.status(ctx, c) })
	}
	wg.Wait()
	for _, st := range out {
		s.noteChange(ctx, st)
	}
	return out
}

// Round applies p and then collects statuses.
func (s *Set) Round(ctx context.Context, p *mamoriv1.Policy) []*mamoriv1.ControlStatus {
	if err := s.Apply(ctx, p); err != nil {
		s.cfg.Log.WarnContext(ctx, "applying policy failed for some controls", "error", err)
	}
	return s.Status(ctx)
}

func (s *Set) status(ctx context.Context, c Control) *mamoriv1.ControlStatus {
	name := c.Name()
	// The call may be abandoned at its timeout and answer later: it hands
	// its status over through got, never by writing a variable this
	// function goes on using (the race detector caught that under load).
	var got atomic.Pointer[mamoriv1.ControlStatus]
	err := s.call(ctx, c, "status", func(ctx context.Context) error {
		st, err := c.Status(ctx)
		got.Store(st)
		return err
	})
	var st *mamoriv1.ControlStatus
	if err == nil {
		st = got.Load()
	}
	s.mu.Lock()
	mode, applyErr := s.modes[name], s.applyErrs[name]
	s.mu.Unlock()
	// The error texts stay English: they are arguments of the message.
	switch {
	case err != nil:
		st = &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_FAILED}
		SetDetail(st, "detail.control.status-error", err.Error())
	case st == nil:
		st = &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_FAILED}
		SetDetail(st, "detail.control.status-nothing")
	case applyErr != nil:
		st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
		SetDetail(st, "detail.control.apply-error", applyErr.Error())
	}
	if st.State == mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED {
		st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
		SetDetail(st, "detail.control.no-state")
	}
	// Monitor mode observes and blocks nothing: "in force" is MONITORING.
	if mode == mamoriv1.Mode_MODE_MONITOR && st.State == mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		st.State = mamoriv1.ControlState_CONTROL_STATE_MONITORING
	}
	st.Control = name
	st.Mode = mode
	if st.ObservedAt == nil {
		st.ObservedAt = timestamppb.New(s.cfg.Now())
	}
	return st
}

// errBusy means the previous call of a control has not returned yet.
var errBusy = errors.New("still busy with an earlier call that timed out")

// call runs f in its own goroutine so that a control that hangs or panics
// cannot stall or crash the round. A call that outlives the timeout is
// abandoned; until it returns, later calls of that control fail at once
// with errBusy rather than piling up goroutines.
func (s *Set) call(ctx context.Context, c Control, what string, f func(context.Context) error) error {
	name := c.Name()
	s.mu.Lock()
	if s.busy[name] {
		s.mu.Unlock()
		return errBusy
	}
	s.busy[name] = true
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	done := make(chan error, 1)
	go func() {
		var err error
		// One deferred function, in this order: recover, clear busy, then
		// hand over the result. Clearing busy after the send would let the
		// next round see a finished call as still running.
		defer func() {
			if r := recover(); r != nil {
				s.cfg.Log.Error("control panicked", "control", name, "call", what, "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
			s.mu.Lock()
			s.busy[name] = false
			s.mu.Unlock()
			done <- err
		}()
		err = f(ctx)
	}()
	defer cancel()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the deadline after all
			return err
		default:
		}
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s timed out after %v", what, s.cfg.Timeout)
		}
		return ctx.Err()
	}
}

func (s *Set) noteChange(ctx context.Context, st *mamoriv1.ControlStatus) {
	now := observed{state: st.State, detail: st.Detail}
	s.mu.Lock()
	prev, known := s.last[st.Control]
	s.mu.Unlock()
	if known && prev.state == now.state {
		return
	}
	from := "UNKNOWN"
	if known {
		from = stateName(prev.state)
	}
	attrs := map[string]string{"from": from, "to": stateName(now.state), "detail": st.Detail}
	if err := s.cfg.Emitter.Emit(ctx, st.Control, KindStateChanged, maps.Clone(attrs)); err != nil {
		// Keep the old state so the change is emitted again next round.
		s.cfg.Log.ErrorContext(ctx, "could not record a control state change", "control", st.Control,
			"from", from, "to", attrs["to"], "error", err)
		return
	}
	s.cfg.Log.InfoContext(ctx, "control state changed", "control", st.Control, "from", from, "to", attrs["to"], "detail", st.Detail)
	s.mu.Lock()
	s.last[st.Control] = now
	s.mu.Unlock()
}

// stateName is "ENFORCED", "FAILED", … for a state.
func stateName(s mamoriv1.ControlState) string {
	return strings.TrimPrefix(s.String(), "CONTROL_STATE_")
}

// StateName is the short name of a state ("ENFORCED") as events carry it.
func StateName(s mamoriv1.ControlState) string { return stateName(s) }
