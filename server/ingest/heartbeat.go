package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// Heartbeats batches the only write a steady-state ("no change") report
// makes: last_seen. Such a report is answered at once; its touch is
// written with every other touch of the last FlushEvery in one
// transaction (store.TouchDevices), and on Close.
//
// What a crash loses: the last_seen of the touches not yet flushed (at
// most FlushEvery of them), never a state change: a report that changes a
// control, the facts, the verdict or carries events goes through the
// Batcher, which answers only after its commit. A device whose last_seen
// was lost looks up to FlushEvery older than it is until its next report.
type Heartbeats struct {
	st    store.Ingest
	every time.Duration
	max   int
	log   *slog.Logger
	// OnStale is told the devices whose touch did not apply (their state,
	// certificate or revocation changed since); set before the first
	// Touch.
	onStale func(ids []string)

	mu      sync.Mutex
	pending map[string]store.Touch
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// HeartbeatConfig tunes Heartbeats.
type HeartbeatConfig struct {
	// FlushEvery bounds how late last_seen is written (and what a crash
	// loses of it).
	FlushEvery time.Duration
	// MaxPending flushes early when this many devices wait.
	MaxPending int
	Log        *slog.Logger
	// OnStale: see Heartbeats.
	OnStale func(ids []string)
}

// DefaultHeartbeatConfig: last_seen at most one second late.
func DefaultHeartbeatConfig() HeartbeatConfig {
	return HeartbeatConfig{FlushEvery: time.Second, MaxPending: 20000}
}

// NewHeartbeats starts the flusher; Close flushes and stops it.
func NewHeartbeats(st store.Ingest, cfg HeartbeatConfig) (*Heartbeats, error) {
	if cfg.FlushEvery <= 0 || cfg.FlushEvery > time.Minute {
		return nil, fmt.Errorf("ingest: heartbeat FlushEvery %v: want more than 0 and at most 1m", cfg.FlushEvery)
	}
	if cfg.MaxPending < 1 {
		return nil, errors.New("ingest: heartbeat MaxPending must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Heartbeats{st: st, every: cfg.FlushEvery, max: cfg.MaxPending, log: cfg.Log, onStale: cfg.OnStale,
		pending: make(map[string]store.Touch), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h, nil
}

// Touch records a steady-state report; a later touch of the same device
// replaces an earlier one.
func (h *Heartbeats) Touch(t store.Touch) error {
	select {
	case <-h.stop:
		return ErrClosed
	default:
	}
	h.mu.Lock()
	h.pending[t.DeviceID] = t
	n := len(h.pending)
	h.mu.Unlock()
	if n >= h.max {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Drop forgets a pending touch of id (its state changed through the
// Batcher, which wrote last_seen itself).
func (h *Heartbeats) Drop(id string) {
	h.mu.Lock()
	delete(h.pending, id)
	h.mu.Unlock()
}

// Close flushes what is pending and stops the flusher.
func (h *Heartbeats) Close() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}

func (h *Heartbeats) run() {
	defer close(h.done)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.kick:
		case <-h.stop:
			h.flush()
			return
		}
		h.flush()
	}
}

// Flush writes what is pending now (tests; Close does it too).
func (h *Heartbeats) Flush() { h.flush() }

func (h *Heartbeats) flush() {
	h.mu.Lock()
	if len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	batch := make([]store.Touch, 0, len(h.pending))
	for _, t := range h.pending {
		batch = append(batch, t)
	}
	clear(h.pending)
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stale, err := h.st.TouchDevices(ctx, batch)
	if err != nil {
		// last_seen only: the next report of each device touches again.
		// The devices go back to the slow path, which re-reads the store.
		h.log.Warn("last_seen batch not written; the devices' next reports will write it", "devices", len(batch), "error", err)
		stale = make([]string, len(batch))
		for i, t := range batch {
			stale[i] = t.DeviceID
		}
	}
	if len(stale) > 0 && h.onStale != nil {
		h.onStale(stale)
	}
}
