package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// TestDiskFullNothingLostSilently is the field report: the server is down,
// the disk under the agent's state directory fills (a 1 MiB tmpfs here),
// 2,000 events are emitted. Then the server returns while the disk stays
// full. What must hold, with the real agent core and the real server:
//
//   - every event is either stored on the server exactly once or counted
//     in an events_dropped event that reaches the server: stored + counted
//     = 2,000;
//   - delivery does not stall on a full disk (acknowledgements stick);
//   - the device is not COMPLIANT while its evidence is being lost: the
//     agent control is DEGRADED;
//   - once the disk has room, the agent control is ENFORCED again.
func TestDiskFullNothingLostSilently(t *testing.T) {
	testenv.Short(t)
	mnt := testenv.TmpFS(t, "1m")

	data, addr := t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	clock := h.Clock
	dir := enrolAgent(t, h, filepath.Join(mnt, "state"), "pc-full")
	id := deviceID(t, dir)
	h.Stop()

	a := startAgent(t, dir, clock.Now, "pc-full")
	filler := testenv.FillFS(t, mnt) // another program fills the disk

	const total = 2000
	em := daemon.NewEmitter(a.spool, clock.Now)
	var dropped int
	for i := range total {
		switch err := em.Emit(ctx, testControl, testKind, map[string]string{"n": strconv.Itoa(i)}); {
		case err == nil:
		case errors.Is(err, spool.ErrFull) && errors.Is(err, syscall.ENOSPC):
			dropped++
		default:
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if dropped == 0 {
		t.Fatal("the disk never filled")
	}
	t.Logf("%d events spooled, %d refused and counted", total-dropped, dropped)

	// The server returns; the disk stays full.
	h2 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	h2.AdminToken = h.AdminToken // issued at the first start, kept in the database
	deadline := time.Now().Add(60 * time.Second)
	var stored, counted int
	for {
		stored = countTestEvents(t, h2.Srv.Store(), id)
		counted = countDropped(t, h2.Srv.Store(), id)
		if stored+counted == total && a.spool.Len() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s on a full disk: %d stored + %d counted of %d; %d still spooled", stored, counted, total, a.spool.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stored != total-dropped || counted != dropped {
		t.Errorf("stored %d (want %d), counted %d (want %d)", stored, total-dropped, counted, dropped)
	}
	// A round after delivery reports the agent control on a still-full disk.
	a.waitRound(t, "a round on the full disk", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.waitRound(t, "another", func(r daemon.RoundResult) bool { return r.Err == nil })
	if d := deviceByID(t, h2, id); !strings.HasSuffix(d.Compliance, "NONCOMPLIANT") || !strings.Contains(strings.Join(d.Reasons, ";"), "agent") {
		t.Errorf("on a full disk the device is %s %v; want NONCOMPLIANT because of the agent control", d.Compliance, d.Reasons)
	}

	// Room again: the reserve refills at the next acknowledgement, and the
	// control is ENFORCED.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	seed(t, a.spool, clock.Now, 1) // something to acknowledge
	deadline = time.Now().Add(30 * time.Second)
	for {
		a.waitRound(t, "a round with room", func(r daemon.RoundResult) bool { return r.Err == nil })
		if d := deviceByID(t, h2, id); strings.HasSuffix(d.Compliance, "_COMPLIANT") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("with room again the device stays %s %v", d.Compliance, d.Reasons)
		}
	}
}

// countDropped adds up, over every events_dropped event stored for the
// device, the test events it counts.
func countDropped(t *testing.T, st store.Events, deviceID string) int {
	t.Helper()
	evs, err := st.ListEvents(ctx, store.EventFilter{DeviceID: deviceID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Event.GetControl() != spool.AgentControl || e.Event.GetKind() != spool.KindEventsDropped {
			continue
		}
		// Only the test's events: the agent's own (policy_applied, …) were
		// refused too while the disk was full, and are counted under their
		// own kinds.
		for _, kv := range strings.Split(e.Event.GetAttributes()["count_by_kind"], ",") {
			k, v, _ := strings.Cut(kv, "=")
			if k != testControl+"/"+testKind {
				continue
			}
			c, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("events_dropped count_by_kind %q", e.Event.GetAttributes()["count_by_kind"])
			}
			n += c
		}
	}
	return n
}

func deviceByID(t *testing.T, h *servertest.Harness, id string) deviceJSON {
	t.Helper()
	for _, d := range devicesJSON(t, h) {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("device %s not listed", id)
	return deviceJSON{}
}
