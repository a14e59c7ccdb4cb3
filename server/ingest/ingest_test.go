package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// fakeIngest records batch sizes; it is the unit under test's only
// collaborator. The real stores are exercised by the api and store tests.
type fakeIngest struct {
	mu      sync.Mutex
	batches []int
	delay   time.Duration
	fail    error
}

func (f *fakeIngest) IngestReports(ctx context.Context, in []store.ReportInput) ([]store.ReportResult, error) {
	time.Sleep(f.delay)
	f.mu.Lock()
	f.batches = append(f.batches, len(in))
	f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	res := make([]store.ReportResult, len(in))
	for i, r := range in {
		if r.DeviceID == "revoked" {
			res[i].Err = store.ErrDeviceRevoked
		}
		res[i].NewEvents = len(r.Events)
	}
	return res, nil
}

func (f *fakeIngest) TouchDevices(context.Context, []store.Touch) ([]string, error) { return nil, nil }

func (f *fakeIngest) DeviceCredential(context.Context, string) (string, time.Time, error) {
	return "", time.Time{}, nil
}

func TestConcurrentReportsShareCommits(t *testing.T) {
	f := &fakeIngest{delay: 5 * time.Millisecond}
	b, err := New(f, Config{MaxBatch: 64, Workers: 1, CommitTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "dev"
			if i == 7 {
				id = "revoked"
			}
			_, err := b.Submit(context.Background(), store.ReportInput{DeviceID: id})
			if (err != nil) != (i == 7) {
				errs <- err
			}
			if i == 7 && !errors.Is(err, store.ErrDeviceRevoked) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected result: %v", err)
	}
	total, largest := 0, 0
	for _, s := range f.batches {
		total += s
		largest = max(largest, s)
	}
	if total != n {
		t.Fatalf("committed %d reports, want %d", total, n)
	}
	if len(f.batches) >= n/2 || largest > 64 {
		t.Fatalf("%d commits for %d reports (largest %d): no group commit, or the cap was ignored", len(f.batches), n, largest)
	}
}

func TestFailedCommitFailsEveryReportInIt(t *testing.T) {
	f := &fakeIngest{fail: errors.New("disk full")}
	b, _ := New(f, DefaultConfig())
	defer b.Close()
	_, err := b.Submit(context.Background(), store.ReportInput{DeviceID: "d"})
	if err == nil || !errors.Is(err, f.fail) {
		t.Fatalf("got %v, want the commit error", err)
	}
}

func TestSubmitAfterClose(t *testing.T) {
	b, _ := New(&fakeIngest{}, DefaultConfig())
	b.Close()
	if _, err := b.Submit(context.Background(), store.ReportInput{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestSubmitHonoursContext(t *testing.T) {
	b, _ := New(&fakeIngest{delay: 200 * time.Millisecond}, DefaultConfig())
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Submit(ctx, store.ReportInput{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {MaxBatch: 1}, {MaxBatch: 1, Workers: 1}, {MaxBatch: 100000, Workers: 1, CommitTimeout: 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
