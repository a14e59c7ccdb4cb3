package daemon

import (
	"github.com/google/uuid"

	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	tests := []struct {
		name string
		r    float64
		cap  time.Duration
		want []time.Duration
	}{
		{"low draw", 0, 5 * time.Minute, []time.Duration{0, 0, 0}},
		{"half", 0.5, 5 * time.Minute, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}},
		{"capped by interval", 0.5, 3 * time.Second, []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backoff{Base: time.Second, Cap: tt.cap, Rand: func() float64 { return tt.r }}
			for i, w := range tt.want {
				if got := b.Next(); got != w {
					t.Errorf("attempt %d: %v, want %v", i, got, w)
				}
			}
		})
	}
	b := Backoff{Base: time.Second, Cap: 5 * time.Minute, Rand: func() float64 { return 0.9999 }}
	for i := range 200 {
		if d := b.Next(); d < 0 || d >= 5*time.Minute {
			t.Fatalf("attempt %d: %v out of [0, 5m)", i, d)
		}
	}
	b.Reset()
	if d := b.Next(); d >= time.Second {
		t.Errorf("after Reset: %v, want < 1s", d)
	}
}

func TestJitterBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.75, 0.99999} {
		d := Jitter(time.Minute, IntervalJitter, r)
		if d < 54*time.Second || d >= 66*time.Second {
			t.Errorf("r=%v: %v outside ±10%% of 1m", r, d)
		}
	}
	if d := Jitter(time.Minute, IntervalJitter, 0); d != 54*time.Second {
		t.Errorf("r=0: %v, want 54s", d)
	}
}

func TestNewEventID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewEventID()
		u, err := uuid.Parse(id)
		if err != nil || len(id) != 36 || u.Version() != 4 || u.Variant() != uuid.RFC4122 || seen[id] {
			t.Fatalf("bad or repeated id %q: %v", id, err)
		}
		seen[id] = true
	}
}
