package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// copyDB copies the server's SQLite files (database, WAL, shared memory)
// from one data directory to another: a backup taken while the server is
// stopped, or its restore.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.Contains(e.Name(), ".db") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file the backup does not have (a WAL written after it) goes.
	ents, _ = os.ReadDir(to)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".db") {
			if _, err := os.Stat(filepath.Join(from, e.Name())); os.IsNotExist(err) {
				os.Remove(filepath.Join(to, e.Name()))
			}
		}
	}
}

// TestDifferentialReportsRestoredBackup: the real agent core against the
// real server. After its first full report the agent sends differential
// reports, "no change" ones in the steady state. The server is then
// restored from a backup older than the agent's last change: the next
// differential report is answered need_full, the agent sends a full
// report at once, and the server converges on the agent's state (its
// digest and the changed control), with no event lost.
func TestDifferentialReportsRestoredBackup(t *testing.T) {
	testenv.Short(t)
	data, backup, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	h := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	clock := h.Clock
	dir := enrolAgent(t, h, t.TempDir(), "pc-delta")
	id := deviceID(t, dir)
	var mediaFailed atomic.Bool
	media := &controltest.Control{ControlName: "media", StatusFunc: func(context.Context) (*mamoriv1.ControlStatus, error) {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Evidence: map[string]string{"udev_rule_sha256": "aa"}}
		if mediaFailed.Load() {
			st.State, st.Detail = mamoriv1.ControlState_CONTROL_STATE_FAILED, "udev rule missing"
		}
		return st, nil
	}}
	a := startAgentWith(t, dir, clock.Now, "pc-delta", func(c *daemon.Config, _ daemon.Spool) {
		c.Controls = []control.Control{media}
	})
	a.waitRound(t, "a full report", func(r daemon.RoundResult) bool { return r.Err == nil && r.Full })
	steady := a.waitRound(t, "a no-change report", func(r daemon.RoundResult) bool { return r.Err == nil && !r.Full && r.Changed == 0 })
	h.Srv.FlushHeartbeats()
	if got, err := h.Srv.Store().GetDevice(ctx, id); err != nil || got.StateDigest != steady.StateDigest {
		t.Fatalf("server digest %q (%v), agent's %q", got.StateDigest, err, steady.StateDigest)
	}

	// Backup (server stopped), then a change the backup does not have.
	h.Stop()
	copyDB(t, data, backup)
	h2 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	mediaFailed.Store(true)
	changed := a.waitRound(t, "a differential report of the change", func(r daemon.RoundResult) bool { return r.Err == nil && !r.Full && r.Changed == 1 })
	if got, _ := h2.Srv.Store().GetDevice(ctx, id); got.StateDigest != changed.StateDigest || mediaState(got) != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Fatalf("after the delta: server digest %q media %v; agent's digest %q", got.StateDigest, mediaState(got), changed.StateDigest)
	}
	h2.Stop()

	// Restore the older backup.
	copyDB(t, backup, data)
	h3 := servertest.Start(t, servertest.Options{DataDir: data, Listen: addr})
	a.waitRound(t, "need_full from the restored server", func(r daemon.RoundResult) bool { return r.Err == nil && r.NeedFull })
	full := a.waitRound(t, "the full report that follows", func(r daemon.RoundResult) bool { return r.Err == nil && r.Full })
	got, err := h3.Srv.Store().GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.StateDigest != full.StateDigest || mediaState(got) != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Fatalf("not converged: server digest %q media %v; agent's digest %q", got.StateDigest, mediaState(got), full.StateDigest)
	}
	a.waitRound(t, "no-change reports again", func(r daemon.RoundResult) bool { return r.Err == nil && !r.Full && r.Changed == 0 && !r.NeedFull })
	deadline := time.Now().Add(10 * time.Second)
	for a.spool.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := a.spool.Len(); n != 0 {
		t.Errorf("%d events still spooled", n)
	}
}

func mediaState(d store.Device) mamoriv1.ControlState {
	for _, c := range d.Controls {
		if c.GetStatus().GetControl() == "media" {
			return c.GetStatus().GetState()
		}
	}
	return mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED
}
