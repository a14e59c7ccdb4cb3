package hatest

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// The terminal's clock jumps an hour forward, then an hour back (a bad
// RTC, a wrong NTP server, a user with local admin). Reports are still
// accepted; events keep the terminal's time stamps but are listed in the
// order they arrived; last_seen follows the server's clock only; and the
// agent's self-check reports the skew (DEGRADED, clock_skew_ms) until the
// clock is right again.
func TestTerminalClockJumps(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	var offset atomic.Int64
	now := func() time.Time { return h.Clock.Now().Add(time.Duration(offset.Load())) }
	a := startAgent(t, "pc-clock", []string{h.Addr}, h.Token(t, 1, 0), h.Srv.Boot.CAFingerprint, now)
	admin := h.Admin(t, h.AdminToken)

	phases := []struct {
		name     string
		offset   time.Duration
		degraded bool
	}{
		{"right", 0, false},
		{"an hour fast", time.Hour, true},
		{"an hour slow", -time.Hour, true},
		{"right again", 0, false},
	}
	var lastSeen time.Time
	for i, ph := range phases {
		h.Clock.Advance(time.Minute)
		offset.Store(int64(ph.offset))
		since := time.Now()
		a.record(t, now(), map[string]string{"phase": strconv.Itoa(i)})
		// Two good rounds after the event is acknowledged: the first
		// measures the skew, the next reports it.
		waitFor(t, 20*time.Second, ph.name+": event stored and skew reported", func() bool {
			return a.spool.Len() == 0 && a.okRounds(since)[h.Addr] >= 3
		})
		a.mu.Lock()
		for _, r := range a.rounds {
			if r.at.After(since) && r.err != nil {
				t.Errorf("%s: a report was refused: %v", ph.name, r.err)
			}
		}
		a.mu.Unlock()
		resp, err := admin.GetDevice(context.Background(), &mamoriv1.GetDeviceRequest{IdOrHostname: a.id})
		if err != nil {
			t.Fatal(err)
		}
		dev := resp.Device
		if got := dev.LastSeen.AsTime(); !got.Equal(h.Clock.Now()) || !got.After(lastSeen) {
			t.Errorf("%s: last_seen %v, want the server's clock %v (after %v)", ph.name, got, h.Clock.Now(), lastSeen)
		}
		lastSeen = dev.LastSeen.AsTime()
		var self *mamoriv1.ControlStatus
		for _, c := range dev.Controls {
			if c.Status.GetControl() == "agent" {
				self = c.Status
			}
		}
		if self == nil {
			t.Fatalf("%s: no agent self-check status stored", ph.name)
		}
		skew, _ := strconv.ParseInt(self.Evidence["clock_skew_ms"], 10, 64)
		degraded := self.State == mamoriv1.ControlState_CONTROL_STATE_DEGRADED
		if degraded != ph.degraded || time.Duration(skew)*time.Millisecond != -ph.offset {
			t.Errorf("%s: self-check %v, clock_skew_ms %s (%q), want degraded=%v and skew %v",
				ph.name, self.State, self.Evidence["clock_skew_ms"], self.Detail, ph.degraded, -ph.offset)
		}
		if ph.degraded && !strings.Contains(self.Detail, "NTP") {
			t.Errorf("%s: the detail does not say what to do: %q", ph.name, self.Detail)
		}
	}

	// Stored in arrival order, with the terminal's own time stamps kept
	// (phase 2's event is "older" than phase 0's by its stamp).
	evs := storedEvents(t, h.Srv.Store(), a.id)
	if len(evs) != len(phases) {
		t.Fatalf("stored %d events, want %d", len(evs), len(phases))
	}
	for i, e := range evs {
		if got := e.Event.Attributes["phase"]; got != strconv.Itoa(i) {
			t.Errorf("event %d in arrival order is phase %s", i, got)
		}
		if skew := e.Event.Time.AsTime().Sub(e.ReceivedAt); skew.Round(time.Minute) != phases[i].offset {
			t.Errorf("phase %d: event time is %v off its arrival, want %v", i, skew, phases[i].offset)
		}
		if i > 0 && !e.ReceivedAt.After(evs[i-1].ReceivedAt) {
			t.Errorf("phase %d: received_at %v not after %v", i, e.ReceivedAt, evs[i-1].ReceivedAt)
		}
	}
}
