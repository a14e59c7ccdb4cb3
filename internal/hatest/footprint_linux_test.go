package hatest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Bounds of the idle agent (issue #20; docs/performance.md "The idle
// agent"). Wake-ups are scheduler time slices of all the agent's threads
// (/proc/PID/task/*/schedstat, third field): each is one return of a
// thread from sleep. An idle agent wakes for its report round (a minute by
// default), and the Go runtime for the collection that follows it.
const (
	idleRSSBound          = 15 << 20 // bytes, VmRSS at the 90th percentile of the idle window's samples
	idleWakeupsPerMinute  = 150      // time slices per minute, all threads
	defaultIdleFootprintT = 3 * time.Minute
)

// TestAgentIdleFootprint: the real mamori-agent, built as the packages
// build it (CGO_ENABLED=0, -trimpath, -s -w), enrolled into a real
// mamori-server process on loopback (SQLite, default policy: monitor mode,
// a report a minute), left idle for MAMORI_IDLE_FOOTPRINT_DURATION (3
// minutes by default: three report rounds and more than the Go runtime's
// two-minute forced collection). Every second it reads the agent's VmRSS
// and VmHWM (/proc/PID/status); over the window, the time slices
// (/proc/PID/task/*/schedstat) and context switches (…/status) of every
// thread. RSS must stay under 15 MiB in 90 % of the samples (a sample
// that falls inside a report round sees the round's code mapped, up to
// ~15 MiB for a moment: docs/performance.md) and the wake-ups under the
// bound above. The agent runs in a mount namespace of its own
// with a private /run, so its local socket (/run/mamori/agent.sock) does not
// meet another agent's on this machine.
func TestAgentIdleFootprint(t *testing.T) {
	testenv.Short(t)
	// Three idle minutes of an agent built without -race: the race
	// pass would only repeat them.
	testenv.NotUnderRace(t, "it measures the release agent, built without the race detector")
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare", "util-linux")
	window := envOr("MAMORI_IDLE_FOOTPRINT_DURATION", defaultIdleFootprintT, time.ParseDuration)
	// MAMORI_FOOTPRINT_AGENT: measure another build (an older commit's, for
	// a before/after in the same conditions).
	bin := os.Getenv("MAMORI_FOOTPRINT_AGENT")
	if bin == "" {
		bin = buildReleaseAgent(t)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}

	data := t.TempDir()
	s := startServer(t, data, "", freeAddr(t))
	pool, fingerprint := caPool(t, data)
	admin := adminClient(t, s.adminAddr, pool, s.adminToken(t))
	ctx := context.Background()
	tok, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	enrol := exec.Command(bin, "enroll", "--state-dir", stateDir, "--server", s.addr,
		"--token", tok.GetToken(), "--ca-fingerprint", fingerprint)
	if out, err := enrol.CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}

	logPath := filepath.Join(t.TempDir(), "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// unshare execs sh, which execs the agent: the PID is the agent's.
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs mamori-run /run && exec "$0" "$@"`, bin, "run", "--state-dir", stateDir, "--server", s.addr)
	cmd.Env = append(os.Environ(), "LANG=C")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	pid := cmd.Process.Pid
	agentLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	// The first round: the server holds the device's controls.
	var deviceID string
	var firstSeen time.Time
	waitFor(t, 60*time.Second, "the agent's first report", func() bool {
		select {
		case <-exited:
			t.Fatalf("agent exited:\n%s", agentLog())
		default:
		}
		r, err := admin.ListDevices(ctx, &mamoriv1.ListDevicesRequest{})
		if err != nil || len(r.GetDevices()) != 1 || len(r.GetDevices()[0].GetControls()) == 0 {
			return false
		}
		deviceID, firstSeen = r.GetDevices()[0].GetId(), r.GetDevices()[0].GetLastSeen().AsTime()
		return true
	})
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != bin {
		t.Fatalf("PID %d runs %q, not the agent %s", pid, exe, bin)
	}
	time.Sleep(5 * time.Second) // the first round's answer and what follows it

	startRSS := procStatus(t, pid)
	before := threadCounters(t, pid)
	var maxRSS, sumRSS, samples int64
	var rss []int64
	began := time.Now()
	for time.Since(began) < window {
		select {
		case <-exited:
			t.Fatalf("agent exited during the idle window:\n%s", agentLog())
		case <-time.After(time.Second):
		}
		st := procStatus(t, pid)
		maxRSS = max(maxRSS, st["VmRSS"])
		rss = append(rss, st["VmRSS"])
		sumRSS += st["VmRSS"]
		samples++
	}
	elapsed := time.Since(began)
	after := threadCounters(t, pid)
	end := procStatus(t, pid)

	var timeSlices, switches, voluntary int64
	for tid, a := range after {
		b := before[tid] // a thread started in the window counts whole
		timeSlices += a.slices - b.slices
		switches += a.switches - b.switches
		voluntary += a.voluntary - b.voluntary
	}
	perMin := func(n int64) float64 { return float64(n) / elapsed.Minutes() }
	dev, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	lastSeen := dev.GetDevice().GetLastSeen().AsTime()

	t.Logf("idle %v: VmRSS at start %d KiB (anon %d, file %d), max %d KiB, mean %d KiB, at end %d KiB (anon %d, file %d); VmHWM %d KiB; threads %d",
		elapsed.Round(time.Second), startRSS["VmRSS"]>>10, startRSS["RssAnon"]>>10, startRSS["RssFile"]>>10,
		maxRSS>>10, sumRSS/max(samples, 1)>>10, end["VmRSS"]>>10, end["RssAnon"]>>10, end["RssFile"]>>10, end["VmHWM"]>>10, len(after))
	t.Logf("wake-ups: %d voluntary context switches (%.1f/min); %d time slices (%.1f/min), %d context switches in all (%.1f/min, the rest preemptions by other load); last_seen advanced %v",
		voluntary, perMin(voluntary), timeSlices, perMin(timeSlices), switches, perMin(switches), lastSeen.Sub(firstSeen).Round(time.Second))
	// One line for make bench (bin/bench.txt).
	fmt.Printf("FOOTPRINT idle=%v rss_max_kib=%d rss_end_kib=%d anon_end_kib=%d file_end_kib=%d hwm_kib=%d wakeups_per_min=%.1f slices_per_min=%.1f ctxsw_per_min=%.1f threads=%d\n",
		elapsed.Round(time.Second), maxRSS>>10, end["VmRSS"]>>10, end["RssAnon"]>>10, end["RssFile"]>>10, end["VmHWM"]>>10,
		perMin(voluntary), perMin(timeSlices), perMin(switches), len(after))

	if !lastSeen.After(firstSeen) {
		t.Errorf("the agent did not report during the idle window (last_seen %v, first %v):\n%s", lastSeen, firstSeen, agentLog())
	}
	slices.Sort(rss)
	if p90 := rss[len(rss)*9/10]; p90 >= idleRSSBound {
		t.Errorf("idle VmRSS at the 90th percentile %d KiB; bound %d KiB", p90>>10, idleRSSBound>>10)
	}
	if perMin(voluntary) > idleWakeupsPerMinute {
		t.Errorf("%.1f wake-ups per minute while idle; bound %d", perMin(voluntary), idleWakeupsPerMinute)
	}
}

// buildReleaseAgent builds mamori-agent as `make packages` does.
func buildReleaseAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mamori-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags",
		"-X github.com/mamori-dev/mamori/internal/buildinfo.Version=footprint-test -s -w -B gobuildid",
		"-o", bin, "../../agent/cmd/mamori-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build mamori-agent: %v\n%s", err, out)
	}
	return bin
}

// procStatus returns the byte-valued fields (VmRSS, VmHWM, RssAnon,
// RssFile) of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if !ok || len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err == nil {
			m[k] = n << 10
		}
	}
	return m
}

type threadCount struct{ slices, switches, voluntary int64 }

// threadCounters reads every thread's time slices (schedstat) and
// context switches (status), by thread ID.
func threadCounters(t *testing.T, pid int) map[string]threadCount {
	t.Helper()
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]threadCount{}
	for _, d := range dirs {
		base := fmt.Sprintf("/proc/%d/task/%s/", pid, d.Name())
		ss, err := os.ReadFile(base + "schedstat")
		if err != nil {
			continue // the thread ended
		}
		var c threadCount
		if fs := strings.Fields(string(ss)); len(fs) == 3 {
			c.slices, _ = strconv.ParseInt(fs[2], 10, 64)
		}
		st, _ := os.ReadFile(base + "status")
		for l := range strings.SplitSeq(string(st), "\n") {
			k, v, _ := strings.Cut(l, ":")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				c.switches += n
				c.voluntary += n
			case "nonvoluntary_ctxt_switches":
				c.switches += n
			}
		}
		m[d.Name()] = c
	}
	return m
}
