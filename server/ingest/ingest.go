// Package ingest turns many concurrent Report calls into few durable
// transactions (group commit).
//
// A durable commit costs about as much as fsync, a few hundred microseconds
// to milliseconds. One transaction per report would cap the server near the
// disk's commit rate; one transaction for every report that arrived while
// the previous commit was in flight costs the same fsync for hundreds of
// reports. Each caller still waits for the commit that holds its report, so
// an acknowledgement always means "on disk".
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// Config tunes the batcher.
type Config struct {
	// MaxBatch caps the reports in one transaction.
	MaxBatch int
	// Workers is how many transactions may be in flight at once. SQLite
	// has one writer, so 1; PostgreSQL gains from a few.
	Workers int
	// CommitTimeout bounds one transaction.
	CommitTimeout time.Duration
}

// DefaultConfig suits SQLite.
func DefaultConfig() Config {
	return Config{MaxBatch: 256, Workers: 1, CommitTimeout: 30 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		return fmt.Errorf("ingest: MaxBatch %d: must be between 1 and 10000", c.MaxBatch)
	}
	if c.Workers < 1 || c.Workers > 64 {
		return fmt.Errorf("ingest: Workers %d: must be between 1 and 64", c.Workers)
	}
	if c.CommitTimeout <= 0 {
		return errors.New("ingest: CommitTimeout must be positive")
	}
	return nil
}

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("ingest: server is shutting down")

type request struct {
	in   store.ReportInput
	done chan store.ReportResult
}

// Batcher collects reports and commits them in batches.
type Batcher struct {
	st    store.Ingest
	cfg   Config
	queue chan *request
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// New starts a batcher's workers. Call Close to stop them.
func New(st store.Ingest, cfg Config) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Batcher{
		st:    st,
		cfg:   cfg,
		queue: make(chan *request, cfg.MaxBatch*cfg.Workers*4),
		stop:  make(chan struct{}),
	}
	for range cfg.Workers {
		b.wg.Add(1)
		go b.work()
	}
	return b, nil
}

// Submit stores one report and returns when the transaction that holds it
// has committed (or failed). If ctx ends first, Submit returns ctx's error;
// the report may still commit, which is safe because events are stored once
// by ID and the agent resends what was not acknowledged.
func (b *Batcher) Submit(ctx context.Context, in store.ReportInput) (store.ReportResult, error) {
	// Encode here, on the caller's goroutine: handlers run in parallel,
	// while everything the store does inside the transaction is serialised
	// behind its writer.
	if in.Encoding == nil {
		if err := in.Encode(); err != nil {
			return store.ReportResult{}, err
		}
	}
	r := &request{in: in, done: make(chan store.ReportResult, 1)}
	select {
	case <-b.stop:
		return store.ReportResult{}, ErrClosed
	default:
	}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return store.ReportResult{}, ctx.Err()
	case <-b.stop:
		return store.ReportResult{}, ErrClosed
	}
	select {
	case res := <-r.done:
		return res, res.Err
	case <-ctx.Done():
		return store.ReportResult{}, ctx.Err()
	}
}

// Close stops accepting reports, commits what is queued, and waits.
func (b *Batcher) Close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

func (b *Batcher) work() {
	defer b.wg.Done()
	batch := make([]*request, 0, b.cfg.MaxBatch)
	for {
		batch = batch[:0]
		stopping := false
		select {
		case r := <-b.queue:
			batch = append(batch, r)
		case <-b.stop:
			stopping = true
		}
		// Take whatever else is waiting: reports that arrived while the
		// previous commit was in flight (or, when stopping, what was queued
		// before Close).
	fill:
		for len(batch) < b.cfg.MaxBatch {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			b.commit(batch)
		}
		if stopping && len(batch) == 0 {
			return
		}
	}
}

func (b *Batcher) commit(batch []*request) {
	in := make([]store.ReportInput, len(batch))
	for i, r := range batch {
		in[i] = r.in
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.CommitTimeout)
	res, err := b.st.IngestReports(ctx, in)
	cancel()
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- store.ReportResult{Err: fmt.Errorf("commit report batch: %w", err)}
		case i < len(res):
			r.done <- res[i]
		default:
			r.done <- store.ReportResult{Err: errors.New("store returned too few results")}
		}
	}
}
