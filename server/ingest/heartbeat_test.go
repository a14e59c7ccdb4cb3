package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

type touchRecorder struct {
	fakeIngest
	mu      sync.Mutex
	touched []store.Touch
	stale   []string
	err     error
}

func (r *touchRecorder) TouchDevices(_ context.Context, ts []store.Touch) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.touched = append(r.touched, ts...)
	return r.stale, nil
}

// Close writes what is pending (a stop loses no last_seen); a later touch
// of a device replaces an earlier one; Drop forgets one; stale devices
// and every device of a failed write go to OnStale.
func TestHeartbeats(t *testing.T) {
	rec := &touchRecorder{stale: []string{"b"}}
	var mu sync.Mutex
	var stale []string
	h, err := NewHeartbeats(rec, HeartbeatConfig{FlushEvery: time.Minute, MaxPending: 100,
		OnStale: func(ids []string) { mu.Lock(); stale = append(stale, ids...); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	for _, tc := range []store.Touch{{DeviceID: "a", At: t0}, {DeviceID: "a", At: t0.Add(time.Second)}, {DeviceID: "b", At: t0}, {DeviceID: "c", At: t0}} {
		if err := h.Touch(tc); err != nil {
			t.Fatal(err)
		}
	}
	h.Drop("c")
	h.Close()
	if len(rec.touched) != 2 {
		t.Fatalf("flushed %v, want a (latest) and b", rec.touched)
	}
	for _, tc := range rec.touched {
		if tc.DeviceID == "a" && !tc.At.Equal(t0.Add(time.Second)) {
			t.Errorf("a flushed at %v, want the later touch", tc.At)
		}
	}
	if len(stale) != 1 || stale[0] != "b" {
		t.Errorf("stale %v, want [b]", stale)
	}
	if err := h.Touch(store.Touch{DeviceID: "d"}); !errors.Is(err, ErrClosed) {
		t.Errorf("touch after Close: %v, want ErrClosed", err)
	}

	rec2 := &touchRecorder{err: errors.New("disk full")}
	stale = nil
	h2, _ := NewHeartbeats(rec2, HeartbeatConfig{FlushEvery: time.Minute, MaxPending: 100,
		OnStale: func(ids []string) { mu.Lock(); stale = append(stale, ids...); mu.Unlock() }})
	h2.Touch(store.Touch{DeviceID: "e"})
	h2.Close()
	if len(stale) != 1 || stale[0] != "e" {
		t.Errorf("after a failed write, stale %v, want [e] (back to the slow path)", stale)
	}
	if _, err := NewHeartbeats(rec, HeartbeatConfig{FlushEvery: 0, MaxPending: 1}); err == nil {
		t.Error("FlushEvery 0 accepted")
	}
}
