package mfa_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
)

// The crash tests run the verifier in a child process (this test binary
// again: TestMain runs crashChild instead of the tests) that answers
// attempts read from stdin, one line each, and kill it with SIGKILL
// (os.Process.Kill) right after reading an answer: what the answer
// depended on must be there when the verifier opens again.

const crashChildEnv = "MAMORI_MFA_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCrashChild is the child: "USER CODE" per line in, the verdict per
// line out.
func runCrashChild(dir string) {
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events = dir, &controltest.Emitter{}
	v, err := mfa.Open(cfg, "dev-1")
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		user, code, _ := strings.Cut(in.Text(), " ")
		fmt.Println(v.Verify(context.Background(), mfa.Attempt{User: user, Service: "crash-test", Code: code}))
	}
	// stdin closed: a stop without Close, like a crash (never reached in
	// the tests, which kill the child first).
}

// crashChild starts the child on dir and returns a function that sends
// one attempt and returns its answer, and one that kills the child.
func crashChild(t *testing.T, dir string) (ask func(user, code string) string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	out := bufio.NewReader(stdout)
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		must(t, cmd.Process.Kill()) // SIGKILL: no deferred code, no Close
		cmd.Wait()
		stdin.Close()
	}
	t.Cleanup(kill)
	line := func() string {
		l, err := out.ReadString('\n')
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return strings.TrimSpace(l)
	}
	if l := line(); l != "READY" {
		t.Fatalf("child: %q", l)
	}
	ask = func(user, code string) string {
		if _, err := fmt.Fprintf(stdin, "%s %s\n", user, code); err != nil {
			t.Fatal(err)
		}
		for {
			l := line()
			switch l {
			case "allow", "deny", "locked":
				return l
			default:
				t.Fatalf("child: %q", l)
			}
		}
	}
	return ask, kill
}

// crashDir makes a verifier directory holding a bundle for users, closed
// cleanly.
func crashDir(t *testing.T, users ...mfatest.User) string {
	t.Helper()
	dir := filepath.Join(tempDir(t), "mfa")
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events = dir, &controltest.Emitter{}
	v, err := mfa.Open(cfg, "dev-1")
	must(t, err)
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", users...)))
	must(t, v.Close())
	return dir
}

// journalFailures is the failure count the journal's last record for
// user holds, -1 if none: what the killed process left in the file.
func journalFailures(t *testing.T, dir, user string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "verify.log"))
	must(t, err)
	n := -1
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			User  string `json:"user"`
			State struct {
				Failures int `json:"failures"`
			} `json:"state"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && rec.User == user {
			n = rec.State.Failures
		}
	}
	return n
}

// TestCrashKeepsFailures: an agent killed right after answering a wrong
// code does not forget it: the record is in the journal, and after the
// restart the lock-out comes no later than without the kill — an
// attacker who can crash the agent gets no guess back.
func TestCrashKeepsFailures(t *testing.T) {
	u := mfatest.NewUser(t, "tanaka")
	max := mfa.DefaultConfig().MaxFailures
	for k := 1; k < max; k++ {
		t.Run(fmt.Sprintf("killed after wrong answer %d of %d", k, max), func(t *testing.T) {
			dir := crashDir(t, u)
			ask, kill := crashChild(t, dir)
			for i := 1; i <= k; i++ {
				if got := ask("tanaka", "000000"); got != "deny" {
					t.Fatalf("wrong code %d: %s", i, got)
				}
			}
			kill() // right after the k-th answer
			if got := journalFailures(t, dir, "tanaka"); got != k {
				t.Fatalf("the journal holds failures=%d after the kill; want %d", got, k)
			}
			// Restarted: wrong codes until the lock-out; no more than the
			// max-k left before the kill.
			ask, _ = crashChild(t, dir)
			tries := 0
			for ; tries < max; tries++ {
				if got := ask("tanaka", "000000"); got == "locked" {
					break
				}
			}
			if tries+1 > max-k {
				t.Fatalf("after the kill the lock-out came at wrong code %d; at most %d were left", tries+1, max-k)
			}
			if got := ask("tanaka", u.Code(time.Now())); got != "locked" {
				t.Fatalf("right code during the lock-out: %s", got)
			}
		})
	}
	t.Run("killed right after the lock-out", func(t *testing.T) {
		dir := crashDir(t, u)
		ask, kill := crashChild(t, dir)
		for i := 1; i < max; i++ {
			ask("tanaka", "000000")
		}
		if got := ask("tanaka", "000000"); got != "locked" {
			t.Fatalf("wrong code %d: %s", max, got)
		}
		kill()
		ask, _ = crashChild(t, dir)
		if got := ask("tanaka", u.Code(time.Now())); got != "locked" {
			t.Fatalf("right code after a kill during the lock-out: %s", got)
		}
	})
}

// TestCrashKeepsStep: a code accepted right before the kill is refused
// after it (replay), while the next step's code works (the refusal was
// the replay, not a lock-out).
func TestCrashKeepsStep(t *testing.T) {
	u := mfatest.NewUser(t, "tanaka")
	dir := crashDir(t, u)
	ask, kill := crashChild(t, dir)
	now := time.Now()
	code := u.Code(now)
	if got := ask("tanaka", code); got != "allow" {
		t.Fatalf("right code: %s", got)
	}
	kill()
	ask, _ = crashChild(t, dir)
	if got := ask("tanaka", code); got != "deny" {
		t.Fatalf("the code accepted before the kill, after it: %s", got)
	}
	if got := ask("tanaka", u.Code(now.Add(30*time.Second))); got != "allow" {
		t.Fatalf("the next step's code after the kill: %s", got)
	}
}

// TestUncleanStopCharge: what a power cut can lose (records answered
// before their fsync) is made up for at the next start; a clean stop
// charges nothing.
func TestUncleanStopCharge(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	u := mfatest.NewUser(t, "tanaka")
	setup := func(t *testing.T) (string, *mfa.Verifier) {
		dir := filepath.Join(tempDir(t), "mfa")
		v := open(t, dir, c, &controltest.Emitter{})
		must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
		return dir, v
	}
	wrong := func(v *mfa.Verifier) mfa.Verdict {
		return v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: "000000"})
	}
	t.Run("clean stop: nothing charged", func(t *testing.T) {
		dir, v := setup(t)
		wrong(v)
		wrong(v)
		must(t, v.Close())
		if got := wrong(v); got != mfa.Deny {
			t.Fatalf("an attempt after Close: %v", got)
		}
		v = open(t, dir, c, &controltest.Emitter{})
		for i := 3; i < 5; i++ {
			if got := wrong(v); got != mfa.Deny {
				t.Fatalf("wrong code %d after a clean stop: %v", i, got)
			}
		}
		if got := wrong(v); got != mfa.Locked {
			t.Fatalf("wrong code 5: %v", got)
		}
	})
	t.Run("power cut: the records after the run's first are lost", func(t *testing.T) {
		dir, v := setup(t)
		// The snapshot Open wrote is on disk; then one durable record
		// (the run's first failure) and two that were still in the page
		// cache when the power went.
		wrong(v)
		b, err := os.ReadFile(filepath.Join(dir, "verify.log"))
		must(t, err)
		wrong(v)
		wrong(v)
		// Lost: the journal as it was after the first record.
		must(t, os.WriteFile(filepath.Join(dir, "verify.log"), b, 0o600))
		v = open(t, dir, c, &controltest.Emitter{})
		// Three wrong codes were answered; two are left before the
		// lock-out, and the charge leaves one.
		if got := wrong(v); got != mfa.Locked {
			t.Fatalf("wrong code after a power cut: %v; want locked", got)
		}
	})
	t.Run("power cut with no run started: nothing charged", func(t *testing.T) {
		dir, v := setup(t)
		if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
			t.Fatal(got)
		}
		_ = dir
		v = open(t, dir, c, &controltest.Emitter{})
		for i := 1; i < 5; i++ {
			if got := wrong(v); got != mfa.Deny {
				t.Fatalf("wrong code %d: %v", i, got)
			}
		}
	})
}

// countingEmitter counts events without keeping them (100,000 attempts).
type countingEmitter struct{ n atomic.Int64 }

func (e *countingEmitter) Emit(context.Context, string, string, map[string]string) error {
	e.n.Add(1)
	return nil
}

// TestUnknownUsersBounded: failures for 100,000 made-up names leave the
// state files bounded (one aggregate, no entry per name), lock nobody
// out, and do not disturb the enrolled user; entries older agents kept
// for made-up names are dropped with the next bundle.
func TestUnknownUsersBounded(t *testing.T) {
	dir := filepath.Join(tempDir(t), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &countingEmitter{}
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events, cfg.Now = dir, ev, c.now
	v, err := mfa.Open(cfg, "dev-1")
	must(t, err)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
	codes := []string{"000000", "ABCD-EFGH-JKMN", "12345678", strings.Repeat("9", 64)}
	const names = 100_000
	size := func() int64 {
		var n int64
		for _, f := range []string{"verify.json", "verify.log"} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	var largest int64
	for i := range names {
		name := fmt.Sprintf("made-up-%06d", i)
		if got := v.Verify(t.Context(), mfa.Attempt{User: name, Code: codes[i%len(codes)]}); got != mfa.Deny {
			t.Fatalf("%s: %v", name, got)
		}
		if i%1000 == 0 {
			largest = max(largest, size())
		}
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
		t.Fatalf("the enrolled user after %d made-up names: %v", names, got)
	}
	must(t, v.Close())
	snap, err := os.ReadFile(filepath.Join(dir, "verify.json"))
	must(t, err)
	// The journal compacts every 512 records (~70 bytes each); the
	// snapshot holds tanaka and the aggregate.
	if largest > 64<<10 || len(snap) > 1024 {
		t.Fatalf("state after %d made-up names: largest %d bytes, snapshot %d bytes: %s", names, largest, len(snap), snap)
	}
	if strings.Contains(string(snap), "made-up") {
		t.Fatalf("a made-up name in the snapshot: %s", snap)
	}
	var s struct {
		Unknown struct {
			Failures int `json:"failures"`
		} `json:"unknown"`
	}
	must(t, json.Unmarshal(snap, &s))
	if s.Unknown.Failures != names {
		t.Fatalf("unknown-user failures %d, want %d", s.Unknown.Failures, names)
	}
	t.Logf("%d made-up names: state files at most %d bytes; snapshot %s", names, largest, snap)

	// An older agent's state, one entry per made-up name: dropped with
	// the next bundle; what protects a login stays.
	old := `{"seq":1,"users":{"tanaka":{"last_step":1},"ghost-1":{"failures":3},"ghost-2":{"failures":1,"lockouts":1}}}`
	must(t, os.WriteFile(filepath.Join(dir, "verify.json"), []byte(old), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "verify.log"), nil, 0o600))
	v, err = mfa.Open(cfg, "dev-1")
	must(t, err)
	must(t, v.Close())
	if snap, _ = os.ReadFile(filepath.Join(dir, "verify.json")); strings.Contains(string(snap), "ghost") ||
		!strings.Contains(string(snap), `"tanaka":{"last_step":1`) {
		t.Fatalf("after a bundle: %s", snap)
	}
}

// TestConcurrentAttempts: attempts of several users at once share the
// syncer's fsyncs (the lock is let go while one waits) and every count and
// step is right afterwards, also after a clean restart. Run with -race.
func TestConcurrentAttempts(t *testing.T) {
	dir := filepath.Join(tempDir(t), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	cfg := mfa.DefaultConfig()
	cfg.MaxFailures = 1000
	cfg.Dir, cfg.Events, cfg.Now = dir, &countingEmitter{}, c.now
	v, err := mfa.Open(cfg, "dev-1")
	must(t, err)
	var users []mfatest.User
	for i := range 8 {
		users = append(users, mfatest.NewUser(t, fmt.Sprintf("user%d", i)))
	}
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", users...)))
	const wrongs = 40
	errs := make(chan error, len(users))
	for _, u := range users {
		go func() {
			// The right code twice at once: exactly one is let in.
			code := u.Code(c.t)
			got := make(chan mfa.Verdict, 2)
			for range 2 {
				go func() { got <- v.Verify(t.Context(), mfa.Attempt{User: u.Name, Code: code}) }()
			}
			a, b := <-got, <-got
			if (a == mfa.Allow) == (b == mfa.Allow) {
				errs <- fmt.Errorf("%s: the same code twice at once: %v, %v", u.Name, a, b)
				return
			}
			for i := range wrongs {
				if got := v.Verify(t.Context(), mfa.Attempt{User: u.Name, Code: "000000"}); got != mfa.Deny {
					errs <- fmt.Errorf("%s: wrong code %d: %v", u.Name, i, got)
					return
				}
			}
			errs <- nil
		}()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	must(t, v.Close())
	b, err := os.ReadFile(filepath.Join(dir, "verify.json"))
	must(t, err)
	var snap struct {
		Users map[string]struct {
			Failures int `json:"failures"`
		} `json:"users"`
	}
	must(t, json.Unmarshal(b, &snap))
	for _, u := range users {
		// The refused copy of the right code (code_used) is a failure too.
		if got := snap.Users[u.Name].Failures; got != wrongs+1 {
			t.Fatalf("%s: %d failures on disk, want %d", u.Name, got, wrongs+1)
		}
	}
	v, err = mfa.Open(cfg, "dev-1")
	must(t, err)
	defer v.Close()
	for _, u := range users {
		if got := v.Verify(t.Context(), mfa.Attempt{User: u.Name, Code: u.Code(c.t)}); got != mfa.Deny {
			t.Fatalf("%s: replay after a restart: %v", u.Name, got)
		}
	}
}

// tempDir is t.TempDir without its clean-up failing the test under wine,
// whose file system refuses Go's RemoveAll of a directory a process has
// used ("Invalid function"); the wine prefix is thrown away anyway.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mamori-mfa-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
