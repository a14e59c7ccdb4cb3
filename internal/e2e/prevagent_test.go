package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
)

// prevAgentMain drives the previous release's agent core (its daemon,
// enrolment, spool, selfcheck and wire code, built from git) against a
// server: enrol, seed events, run rounds, print one JSON line per round.
// It is written against that release's API, which is the one it shares
// with this file's version at the time of writing.
const prevAgentMain = `package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func main() {
	server := flag.String("server", "", "")
	token := flag.String("token", "", "")
	fp := flag.String("ca-fingerprint", "", "")
	stateDir := flag.String("state", "", "")
	rounds := flag.Int("rounds", 5, "")
	events := flag.Int("events", 10, "")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fail := func(err error) { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
	dir, err := state.Open(*stateDir)
	if err != nil {
		fail(err)
	}
	facts := &mamoriv1.DeviceFacts{Hostname: "pc-prev", Os: "linux", OsVersion: "Debian GNU/Linux 12", MachineId: "prev-machine", AgentVersion: "prev"}
	if _, err := enroll.Enroll(ctx, slog.New(slog.DiscardHandler), dir, enroll.Params{Servers: []string{*server},
		Token: config.Secret(*token), CAFingerprint: *fp, Facts: facts}); err != nil {
		fail(err)
	}
	sp, err := spool.Open(filepath.Join(*stateDir, "spool"), spool.Options{})
	if err != nil {
		fail(err)
	}
	defer sp.Close()
	for i := 0; i < *events; i++ {
		if err := sp.Append(ctx, &mamoriv1.Event{Id: daemon.NewEventID(), Time: timestamppb.Now(), Control: "media", Kind: "e2e_test"}); err != nil {
			fail(err)
		}
	}
	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool = dir, sp
	cfg.Facts = func(context.Context) (*mamoriv1.DeviceFacts, error) { return facts, nil }
	cfg.Controls = []control.Control{&controltest.Control{ControlName: "media"}}
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
			return nil
		}
	}
	n := 0
	enc := json.NewEncoder(os.Stdout)
	cfg.OnRound = func(r daemon.RoundResult) {
		e := ""
		if r.Err != nil {
			e = r.Err.Error()
		}
		enc.Encode(map[string]any{"err": e, "sent": r.Sent, "acked": r.Acked, "statuses": len(r.Statuses)})
		if n++; n >= *rounds {
			cancel()
		}
	}
	d, err := daemon.New(cfg)
	if err != nil {
		fail(err)
	}
	if err := d.Run(ctx); err != nil {
		fail(err)
	}
}
`

// prevRef is the last commit before differential reports: the parent of
// the commit that added agent/daemon/delta.go, or MAMORI_PREV_REF.
func prevRef(t *testing.T, repo string) string {
	if r := os.Getenv("MAMORI_PREV_REF"); r != "" {
		return r
	}
	out, err := exec.Command("git", "-C", repo, "log", "--diff-filter=A", "--format=%H", "--", "agent/daemon/delta.go").Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		testenv.Unavailable(t, "no git history with agent/daemon/delta.go (set MAMORI_PREV_REF to the previous release)")
	}
	return lines[len(lines)-1] + "^"
}

// buildPrevAgent exports the previous release's tree from git (git
// archive: the repository and its worktrees are left as they are), adds
// prevAgentMain to it and builds it.
func buildPrevAgent(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git not found (apt-get install git)")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		testenv.Unavailable(t, "not in a git checkout: the previous release is built from git history")
	}
	repo := strings.TrimSpace(string(top))
	ref := prevRef(t, repo)
	tree := t.TempDir()
	archive := exec.Command("git", "-C", repo, "archive", "--format=tar", ref)
	untar := exec.Command("tar", "-x", "-C", tree)
	// One buffer each: two processes' copiers writing one buffer race.
	var archErr, tarErr bytes.Buffer
	untar.Stdin, _ = archive.StdoutPipe()
	archive.Stderr, untar.Stderr = &archErr, &tarErr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", ref, err, archErr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar %s: %v\n%s", ref, err, tarErr.String())
	}
	if err := os.MkdirAll(filepath.Join(tree, "cmd", "prevagent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "cmd", "prevagent", "main.go"), []byte(prevAgentMain), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "prevagent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/prevagent")
	build.Dir = tree
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous agent (%s): %v\n%s", ref, err, out)
	}
	t.Logf("previous agent built from %s", ref)
	return bin
}

// TestPreviousAgentCountedCorrectly: the previous release's agent (full
// reports only, no digests) reports to this server: every report is
// stored as a full one, the device is counted (not "never reported"), its
// controls are there, and every event is stored exactly once.
func TestPreviousAgentCountedCorrectly(t *testing.T) {
	testenv.Short(t)
	bin := buildPrevAgent(t)
	h := servertest.Start(t, servertest.Options{})
	const rounds, events = 6, 25
	cmd := exec.Command(bin, "-server", h.Addr, "-token", h.Token(t, 1, 0), "-ca-fingerprint", h.Srv.Boot.CAFingerprint,
		"-state", t.TempDir(), "-rounds", "6", "-events", "25")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("previous agent: %v\n%s", err, stderr.String())
	}
	var ok, acked int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r struct {
			Err      string
			Sent     int
			Acked    int
			Statuses int
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("round line %q: %v", sc.Text(), err)
		}
		if r.Err != "" {
			t.Errorf("previous agent's round failed: %s", r.Err)
			continue
		}
		ok++
		acked += r.Acked
	}
	// The agent adds events of its own (policy_applied and the like).
	if ok != rounds || acked < events {
		t.Fatalf("previous agent: %d good rounds (want %d), %d events acknowledged (want %d)\n%s", ok, rounds, acked, events, out)
	}
	devs, err := h.Srv.Store().ListDevices(ctx, store.DeviceFilter{Limit: 10})
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices: %v, %v", devs, err)
	}
	d := devs[0]
	if d.Verdict == store.VerdictNeverReported || d.LastSeen.IsZero() || len(d.Controls) != 2 || d.StateDigest != "" {
		t.Errorf("previous agent's device: verdict %s last seen %v controls %d digest %q", d.Verdict, d.LastSeen, len(d.Controls), d.StateDigest)
	}
	if n := countTestEvents(t, h.Srv.Store(), d.ID); n != events {
		t.Errorf("test events stored = %d, want %d", n, events)
	}
	if n, err := h.Srv.Store().CountEvents(ctx, d.ID); err != nil || int(n) != acked {
		t.Errorf("events stored = %d, %v; want the %d acknowledged", n, err, acked)
	}
	counts, err := h.Srv.Store().CountFleet(ctx, store.OfflineCut{})
	if err != nil || counts.Total != 1 || counts.NeverReported != 0 || counts.Compliant+counts.Noncompliant != 1 {
		t.Errorf("fleet counts %+v, %v", counts, err)
	}
}
