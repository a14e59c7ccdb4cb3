package incident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// Store is what the watcher needs.
type Store interface {
	store.Evidence
	CurrentPolicy(ctx context.Context) (*mamoriv1.Policy, error)
	CountFleet(ctx context.Context, cut store.OfflineCut) (store.FleetCounts, error)
}

// Config tunes the watcher and the notifier.
type Config struct {
	Rules Rules
	// Interval between watcher steps (each: daily snapshot, detection,
	// delivery).
	Interval time.Duration
	// Batch bounds the events and history rows read per transaction.
	Batch int
	// Margin re-reads device sweeps this far back (see store.WatchParams).
	Margin time.Duration
	// EscalateAfter: an incident not acknowledged this long after it
	// opened is notified once more. Zero: never.
	EscalateAfter time.Duration
	// RatePerHour caps the messages per channel and hour; over it,
	// notifications are marked suppressed (the console still lists every
	// incident).
	RatePerHour int
	// MaxAttempts per notification before it is marked failed.
	MaxAttempts int
	// Location decides which day a snapshot belongs to.
	Location *time.Location
	// ConsoleURL, when set, makes links in messages ("https://host:8444").
	ConsoleURL string
}

// DefaultConfig: every 30 s, 1,000 rows a transaction (about 60 ms of
// SQLite's single writer, so report ingest never waits long), escalate after 30
// minutes, 60 messages per channel and hour, 8 attempts, JST.
func DefaultConfig() Config {
	return Config{Rules: DefaultRules(), Interval: 30 * time.Second, Batch: 1000, Margin: 5 * time.Minute,
		EscalateAfter: 30 * time.Minute, RatePerHour: 60, MaxAttempts: 8, Location: time.FixedZone("JST", 9*3600)}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.Rules.Validate(); err != nil {
		return err
	}
	if c.Interval <= 0 || c.Batch <= 0 || c.RatePerHour <= 0 || c.MaxAttempts <= 0 || c.Location == nil || c.EscalateAfter < 0 {
		return errors.New("incident watcher: interval, batch, rate and attempts must be positive, a location is required")
	}
	return nil
}

// Watcher runs detection and delivery periodically.
type Watcher struct {
	st       Store
	cfg      Config
	channels map[string]Channel
	names    []string
	now      func() time.Time
	log      *slog.Logger

	mu   sync.Mutex // one Step at a time in this process
	stop context.CancelFunc
	done chan struct{}
}

// New builds a watcher; channels may be empty (incidents without
// notifications).
func New(st Store, cfg Config, channels []Channel, now func() time.Time, log *slog.Logger) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{st: st, cfg: cfg, channels: map[string]Channel{}, now: now, log: log}
	for _, c := range channels {
		if _, dup := w.channels[c.Name()]; dup {
			return nil, fmt.Errorf("incident watcher: two %s channels", c.Name())
		}
		w.channels[c.Name()] = c
		w.names = append(w.names, c.Name())
	}
	return w, nil
}

// Start runs Step every Interval until Stop.
func (w *Watcher) Start(ctx context.Context) {
	ctx, w.stop = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.cfg.Interval)
		defer t.Stop()
		for {
			if err := w.Step(ctx); err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "incident watcher step", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends Start's loop and waits for it, at most 10 s.
func (w *Watcher) Stop() {
	if w.stop == nil {
		return
	}
	w.stop()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
	}
}

// Step takes today's snapshot, runs detection until caught up (bounded)
// and delivers what is due.
func (w *Watcher) Step(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.snapshot(ctx), w.detect(ctx), w.Deliver(ctx))
}

func (w *Watcher) snapshot(ctx context.Context) error {
	pol, err := w.st.CurrentPolicy(ctx)
	if err != nil {
		return err
	}
	now := w.now()
	n, err := w.st.CountFleet(ctx, compliance.OfflineCut(pol, now))
	if err != nil {
		return err
	}
	return w.st.PutDailySnapshot(ctx, store.DailySnapshot{Day: now.In(w.cfg.Location).Format(time.DateOnly), FleetCounts: n, TakenAt: now})
}

func (w *Watcher) detect(ctx context.Context) error {
	pol, err := w.st.CurrentPolicy(ctx)
	if err != nil {
		return err
	}
	for range 500 { // at most 500 batches a step; the rest next step
		now := w.now()
		cut := compliance.OfflineCut(pol, now) // groups with a max report age of their own
		p := store.WatchParams{Now: now, Limit: w.cfg.Batch, SilentBefore: cut.Default, SilentGroups: cut.Groups,
			Margin: w.cfg.Margin, MarkHorizon: now.Add(-w.cfg.Rules.USBWindow - w.cfg.Margin - time.Hour), Channels: w.names}
		if w.cfg.EscalateAfter > 0 {
			p.EscalateBefore = now.Add(-w.cfg.EscalateAfter)
		}
		res, err := w.st.Watch(ctx, p, w.cfg.Rules.Judge)
		if err != nil {
			return err
		}
		if res.Opened > 0 || res.Escalated > 0 {
			w.log.InfoContext(ctx, "incidents", "opened", res.Opened, "escalated", res.Escalated, "bumped", res.Bumped)
		}
		if !res.More {
			return nil
		}
	}
	return nil
}

// Deliver sends the due notifications of the outbox: each is leased,
// sent, and marked sent, retried with back-off, failed after MaxAttempts,
// or suppressed when its channel's hourly rate is used up.
func (w *Watcher) Deliver(ctx context.Context) error {
	var errs []error
	for range 20 {
		now := w.now()
		ns, err := w.st.ClaimNotifications(ctx, now, now.Add(2*time.Minute), 50)
		if err != nil {
			return err
		}
		if len(ns) == 0 {
			break
		}
		for _, n := range ns {
			errs = append(errs, w.deliverOne(ctx, n))
		}
	}
	return errors.Join(errs...)
}

func (w *Watcher) deliverOne(ctx context.Context, n store.Notification) error {
	now := w.now()
	ch, ok := w.channels[n.Channel]
	if !ok {
		// Configured on another server only: leave it to that one.
		return w.st.FinishNotification(ctx, n.ID, store.NotificationOutcome{State: store.NotifyPending, NextAt: now.Add(w.cfg.Interval)})
	}
	sent, err := w.st.CountSent(ctx, n.Channel, now.Add(-time.Hour))
	if err != nil {
		return err
	}
	if sent >= w.cfg.RatePerHour {
		return w.st.FinishNotification(ctx, n.ID, store.NotificationOutcome{State: store.NotifySuppressed, At: now,
			Error: "rate limit: " + strconv.Itoa(w.cfg.RatePerHour) + " per hour"})
	}
	m := Message{Kind: n.Kind, Incident: n.Incident}
	if w.cfg.ConsoleURL != "" {
		m.Link = w.cfg.ConsoleURL + "/incidents/" + strconv.FormatInt(n.Incident.ID, 10)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = ch.Send(sctx, m)
	cancel()
	if err == nil {
		return w.st.FinishNotification(ctx, n.ID, store.NotificationOutcome{State: store.NotifySent, At: w.now()})
	}
	w.log.WarnContext(ctx, "notification not delivered", "channel", n.Channel, "incident", n.Incident.ID, "attempt", n.Attempts, "error", err)
	if n.Attempts >= w.cfg.MaxAttempts {
		return w.st.FinishNotification(ctx, n.ID, store.NotificationOutcome{State: store.NotifyFailed, At: now, Error: err.Error()})
	}
	backoff := min(30*time.Second<<min(n.Attempts-1, 10), time.Hour)
	return w.st.FinishNotification(ctx, n.ID, store.NotificationOutcome{State: store.NotifyPending, NextAt: now.Add(backoff), Error: err.Error()})
}
