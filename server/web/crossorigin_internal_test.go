package web

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

type rowSink struct {
	mu   sync.Mutex
	rows []string
}

func (s *rowSink) write(_ context.Context, actor, action, target, detail string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, actor+"|"+action+"|"+target+"|"+detail)
	return nil
}

var countRe = regexp.MustCompile(`count=(\d+) more`)

// total is the rows written and the refusals their counts stand for.
func (s *rowSink) total() (rows, counted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		if m := countRe.FindStringSubmatch(r); m != nil {
			n, _ := strconv.Atoi(m[1])
			counted += n
		}
	}
	return len(s.rows), counted
}

// TestRefusalAggWindow: the first refusal of each key is reported as
// first, the rest are counted and written by the window's timer as one
// row per key; the next window starts afresh. Distinct keys beyond
// maxRefusalKeys share one, so the map stays bounded and nothing is lost.
func TestRefusalAggWindow(t *testing.T) {
	sink := &rowSink{}
	a := &refusalAgg{window: 100 * time.Millisecond, now: time.Now, write: sink.write}
	firsts := 0
	for i := range 30 {
		k := refusalKey{origin: fmt.Sprint("https://evil", i%3, ".example"), request: "POST /policy"}
		if _, first := a.note(k); first {
			firsts++
		}
	}
	if firsts != 3 {
		t.Fatalf("%d firsts, want 3", firsts)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sink.mu.Lock()
		n := len(sink.rows)
		sink.mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	rows, counted := sink.total()
	if rows != 3 || counted != 27 {
		t.Fatalf("after the window: %d rows counting %d refusals, want 3 counting 27 (the firsts are the caller's):\n%v", rows, counted, sink.rows)
	}
	// A new window: the first is first again.
	if _, first := a.note(refusalKey{origin: "https://evil0.example", request: "POST /policy"}); !first {
		t.Error("the next window's first refusal is counted")
	}
	a.Flush(context.Background())
	if rows, _ := sink.total(); rows != 3 {
		t.Errorf("a window with only its first refusal wrote a count row: %d rows", rows)
	}

	// Distinct origins beyond the cap.
	bs := &rowSink{}
	b := &refusalAgg{window: time.Hour, now: time.Now, write: bs.write}
	firsts = 0
	for i := range maxRefusalKeys + 500 {
		if _, first := b.note(refusalKey{origin: fmt.Sprint("https://o", i, ".example"), request: "POST /x"}); first {
			firsts++
		}
	}
	if len(b.keys) > maxRefusalKeys+1 {
		t.Errorf("%d keys, want at most %d", len(b.keys), maxRefusalKeys+1)
	}
	b.Flush(context.Background())
	_, counted = bs.total()
	if firsts+counted != maxRefusalKeys+500 {
		t.Errorf("%d firsts + %d counted: want %d refusals in all", firsts, counted, maxRefusalKeys+500)
	}
}
