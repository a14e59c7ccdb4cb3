package spool

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Environment of the helper process.
const (
	helperEnv    = "MAMORI_SPOOL_HELPER" // "append" or "ack"
	helperDirEnv = "MAMORI_SPOOL_DIR"
)

// crashOptions are used by parent and child alike.
func crashOptions() Options { return Options{MaxBytes: 256 << 20, MaxRecords: 1 << 20} }

// TestMain runs crashChild instead of the tests when the crash tests start
// this binary as their child.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		crashChild(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild is the child of the crash tests. It works on the spool until
// it is killed and prints, one line each, "A id" after an Append of id
// returned nil, "T id" before an Ack of id, and "K id" after that Ack
// returned nil.
func crashChild(mode string) {
	s, err := Open(os.Getenv(helperDirEnv), crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := &lineWriter{w: os.Stdout}
	var wg sync.WaitGroup
	// Several appenders, so concurrent calls share fsyncs.
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				n := 1 + i%4
				var evs []*mamoriv1.Event
				for j := range n {
					evs = append(evs, testEvent(fmt.Sprintf("%d-%d-%d-%d", os.Getpid(), w, i, j), "usb"))
				}
				if err := s.Append(context.Background(), evs...); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				for _, ev := range evs {
					out.line("A " + ev.Id)
				}
			}
		})
	}
	if mode == "ack" {
		for {
			evs, err := s.Pending(40, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			var ids []string
			for _, ev := range evs {
				ids = append(ids, ev.Id)
				out.line("T " + ev.Id)
			}
			if err := s.Ack(ids); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			for _, id := range ids {
				out.line("K " + id)
			}
		}
	}
	wg.Wait()
}

// lineWriter writes whole lines with one write each.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write([]byte(s + "\n"))
}

// runAndKill starts the helper in mode on dir, SIGKILLs it a random delay
// after it started working, and returns the lines it printed.
func runAndKill(t *testing.T, mode, dir string, rng *rand.Rand) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	done, working := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if lines == nil {
				close(working)
			}
			lines = append(lines, sc.Text())
		}
	}()
	// The random delay runs from the helper's first line: on a loaded
	// machine its start-up (a -race binary, Open) can take longer than the
	// whole delay, and a helper killed before it did anything tests nothing.
	select {
	case <-working:
	case <-done:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	cmd.Wait()
	if stderr.Len() > 0 {
		t.Fatalf("helper failed: %s", stderr.String())
	}
	// A line cut by the kill has no newline; the scanner still returns it,
	// so keep only well-formed lines.
	var ok []string
	for _, l := range lines {
		if len(l) > 2 && (l[0] == 'A' || l[0] == 'T' || l[0] == 'K') && l[1] == ' ' && strings.Count(l, "-") == 3 || len(l) > 2 && l[1] == ' ' && strings.HasPrefix(l[2:], "pre") {
			ok = append(ok, l)
		}
	}
	return ok
}

func crashRounds(t *testing.T) int {
	if testing.Short() {
		return 1
	}
	return 4
}

// TestCrashDuringAppend kills a process appending from four goroutines and
// checks that every event whose Append returned is there, exactly once.
func TestCrashDuringAppend(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	dir := t.TempDir()
	appended := map[string]bool{}
	for round := range crashRounds(t) {
		lines := runAndKill(t, "append", dir, rng)
		for _, l := range lines {
			appended[l[2:]] = true
		}
		s, err := Open(dir, crashOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs := allPending(t, s)
		s.Close()
		seen := map[string]bool{}
		for _, ev := range evs {
			if seen[ev.Id] {
				t.Fatalf("round %d: %s twice", round, ev.Id)
			}
			seen[ev.Id] = true
		}
		for id := range appended {
			if !seen[id] {
				t.Fatalf("round %d: %s was appended but is lost", round, id)
			}
		}
		if n := len(spoolEvents(evs, KindSpoolDamaged)); n > 0 {
			t.Errorf("round %d: a kill must not look like damage; %d damage events", round, n)
		}
		t.Logf("round %d: %d events confirmed, %d held", round, len(appended), len(evs))
	}
}

// TestCrashDuringAck kills a process that appends and acks concurrently:
// events whose Ack returned never come back, nothing unacknowledged is
// lost, no event appears twice.
func TestCrashDuringAck(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	dir := t.TempDir()
	s, err := Open(dir, crashOptions())
	if err != nil {
		t.Fatal(err)
	}
	appended := map[string]bool{}
	for i := range 50 {
		batch := events(ids(fmt.Sprintf("pre-%d-", i), 0, 20), "usb")
		mustAppend(t, s, batch...)
		for _, ev := range batch {
			appended[ev.Id] = true
		}
	}
	s.Close()
	acked := map[string]bool{}
	for round := range crashRounds(t) {
		tried := map[string]bool{}
		for _, l := range runAndKill(t, "ack", dir, rng) {
			id := l[2:]
			switch l[0] {
			case 'A':
				appended[id] = true
			case 'T':
				tried[id] = true
			case 'K':
				acked[id] = true
			}
		}
		s, err := Open(dir, crashOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs := allPending(t, s)
		s.Close()
		seen := map[string]bool{}
		for _, ev := range evs {
			if seen[ev.Id] {
				t.Fatalf("round %d: %s twice", round, ev.Id)
			}
			seen[ev.Id] = true
			if acked[ev.Id] {
				t.Fatalf("round %d: %s came back after its Ack returned", round, ev.Id)
			}
		}
		for id := range appended {
			if !seen[id] && !acked[id] && !tried[id] {
				t.Fatalf("round %d: %s was never acked but is lost", round, id)
			}
		}
		// Events whose Ack was cut short may be there or not; after this
		// round they count as acked if they are gone.
		for id := range tried {
			if !seen[id] {
				acked[id] = true
			}
		}
		t.Logf("round %d: %d appended, %d acked, %d held", round, len(appended), len(acked), len(evs))
		if len(acked) == 0 {
			t.Errorf("round %d: helper acked nothing", round)
		}
	}
}
