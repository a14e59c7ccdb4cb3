package svc

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStartReturnsStopWaits(t *testing.T) {
	stopped := make(chan struct{})
	p := &Program{Run: func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // clean-up
		close(stopped)
		return nil
	}}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Error("Stop returned before Run finished")
	}
}

func TestStopBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	p := &Program{StopTimeout: 50 * time.Millisecond, Run: func(ctx context.Context) error { <-block; return nil }}
	p.Start(nil)
	start := time.Now()
	if err := p.Stop(nil); err == nil {
		t.Error("Stop of a hung Run reported success")
	}
	if time.Since(start) > time.Second {
		t.Error("Stop not bounded")
	}
}

func TestOnExit(t *testing.T) {
	got := make(chan error, 1)
	boom := errors.New("boom")
	p := &Program{Run: func(ctx context.Context) error { return boom }, OnExit: func(err error) { got <- err }}
	p.Start(nil)
	select {
	case err := <-got:
		if !errors.Is(err, boom) {
			t.Errorf("OnExit(%v)", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnExit not called")
	}
}
