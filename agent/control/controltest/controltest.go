// Package controltest holds fakes for tests of code that uses controls.
package controltest

import (
	"context"
	"maps"
	"sync"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Event is one emitted event.
type Event struct {
	Control, Kind string
	Attrs         map[string]string
}

// Emitter records events in memory. Err, when set, is returned by Emit.
type Emitter struct {
	mu     sync.Mutex
	events []Event
	Err    error
}

// Emit records the event.
func (e *Emitter) Emit(ctx context.Context, control, kind string, attrs map[string]string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Err != nil {
		return e.Err
	}
	e.events = append(e.events, Event{control, kind, maps.Clone(attrs)})
	return nil
}

// Events returns what was emitted and forgets it.
func (e *Emitter) Events() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.events
	e.events = nil
	return out
}

// SetErr sets the error Emit returns.
func (e *Emitter) SetErr(err error) {
	e.mu.Lock()
	e.Err = err
	e.mu.Unlock()
}

// Control is a scriptable control. Its functions may be nil: Apply then
// succeeds and Status reports ENFORCED.
type Control struct {
	ControlName string
	ApplyFunc   func(ctx context.Context, p *mamoriv1.ControlPolicy) error
	StatusFunc  func(ctx context.Context) (*mamoriv1.ControlStatus, error)

	mu      sync.Mutex
	applied []*mamoriv1.ControlPolicy
}

// Name returns ControlName.
func (c *Control) Name() string { return c.ControlName }

// Apply records p and calls ApplyFunc.
func (c *Control) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	c.mu.Lock()
	c.applied = append(c.applied, p)
	c.mu.Unlock()
	if c.ApplyFunc != nil {
		return c.ApplyFunc(ctx, p)
	}
	return nil
}

// Status calls StatusFunc.
func (c *Control) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	if c.StatusFunc != nil {
		return c.StatusFunc(ctx)
	}
	return &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED}, nil
}

// Applied returns every policy applied so far.
func (c *Control) Applied() []*mamoriv1.ControlPolicy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*mamoriv1.ControlPolicy(nil), c.applied...)
}
