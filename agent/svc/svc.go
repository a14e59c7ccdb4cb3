// Package svc runs the agent under the system's service manager (systemd,
// the Windows service control manager) through kardianos/service: Start
// returns at once and runs the work in a goroutine, Stop cancels it and
// waits, bounded.
package svc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kardianos/service"
)

// Name is the service name.
const Name = "mamori-agent"

// DefaultStopTimeout bounds Stop.
const DefaultStopTimeout = 10 * time.Second

// Program adapts a Run function to service.Interface.
type Program struct {
	// Run does the work until ctx ends.
	Run func(ctx context.Context) error
	// StopTimeout bounds Stop; 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	Log         *slog.Logger
	// OnExit is called when Run returns on its own (not by Stop), with its
	// error; main uses it to exit non-zero so the service manager restarts
	// the agent.
	OnExit func(error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start starts Run in a goroutine and returns at once.
func (p *Program) Start(s service.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		return errors.New("already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	p.platformStart(s) // Windows: recovery actions, wine's SCM (svc_windows.go)
	go func() {
		defer close(p.done)
		err := p.Run(ctx)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		if ctx.Err() == nil && p.OnExit != nil {
			p.OnExit(err)
		}
	}()
	return nil
}

// Stop cancels Run and waits for it, at most StopTimeout.
func (p *Program) Stop(s service.Service) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-time.After(timeout):
		if p.Log != nil {
			p.Log.Error("agent did not stop in time; exiting anyway", "timeout", timeout)
		}
		return errors.New("agent did not stop within " + timeout.String())
	}
}

// Config returns the service definition. args are the arguments the
// service manager starts the binary with (e.g. "run --config …"). On Linux
// systemd restarts the agent when it fails; on Windows the SCM does.
func Config(args []string) *service.Config {
	return &service.Config{
		Name:        Name,
		DisplayName: "mamori agent",
		Description: "mamori endpoint compliance agent (My Number tier terminal controls)",
		Arguments:   args,
		Option: service.KeyValue{
			"Restart":                "on-failure",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "5s",
			"OnFailureResetPeriod":   86400,
			"DelayedAutoStart":       false,
		},
	}
}
