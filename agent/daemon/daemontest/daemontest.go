// Package daemontest holds an in-memory spool for tests of the daemon and
// of end-to-end wiring. It is not durable; agent/spool is.
package daemontest

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// ErrFull is returned by Append when Max events are pending.
var ErrFull = errors.New("spool full")

// Spool is an in-memory spool with the daemon's Spool methods.
type Spool struct {
	mu     sync.Mutex
	events []*mamoriv1.Event
	// Max bounds the queue; 0 means unbounded.
	Max int
}

// Append queues events.
func (s *Spool) Append(ctx context.Context, evs ...*mamoriv1.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && len(s.events)+len(evs) > s.Max {
		return ErrFull
	}
	for _, e := range evs {
		s.events = append(s.events, proto.Clone(e).(*mamoriv1.Event))
	}
	return nil
}

// Pending returns the oldest events within both limits (at least one).
func (s *Spool) Pending(maxEvents, maxBytes int) ([]*mamoriv1.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mamoriv1.Event
	size := 0
	for _, e := range s.events {
		n := proto.Size(e)
		if len(out) == maxEvents || len(out) > 0 && size+n > maxBytes {
			break
		}
		size += n
		out = append(out, proto.Clone(e).(*mamoriv1.Event))
	}
	return out, nil
}

// Ack forgets the events with these IDs.
func (s *Spool) Ack(ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	drop := map[string]bool{}
	for _, id := range ids {
		drop[id] = true
	}
	kept := s.events[:0]
	for _, e := range s.events {
		if !drop[e.Id] {
			kept = append(kept, e)
		}
	}
	s.events = kept
	return nil
}

// Len returns the number of pending events.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Events returns a copy of every pending event.
func (s *Spool) Events() []*mamoriv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*mamoriv1.Event, len(s.events))
	for i, e := range s.events {
		out[i] = proto.Clone(e).(*mamoriv1.Event)
	}
	return out
}
