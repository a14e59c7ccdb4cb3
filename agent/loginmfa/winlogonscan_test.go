package loginmfa_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// fakeLog is a Security log of 4624 events in memory.
type fakeLog struct {
	mu     sync.Mutex
	events map[uint64][]byte // by record ID
	err    error
}

func (l *fakeLog) add(t *testing.T, id uint64, subst ...string) {
	t.Helper()
	b, err := os.ReadFile("testdata/events/4624-interactive.xml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "<EventRecordID>48213<", "<EventRecordID>"+strconv.FormatUint(id, 10)+"<", 1)
	for i := 0; i+1 < len(subst); i += 2 {
		s = strings.Replace(s, subst[i], subst[i+1], 1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.events == nil {
		l.events = map[uint64][]byte{}
	}
	l.events[id] = []byte(s)
}

func (l *fakeLog) Latest(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var max uint64
	for id := range l.events {
		max = maxU(max, id)
	}
	return max, l.err
}

func (l *fakeLog) After(_ context.Context, after uint64, n int) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	for id := after + 1; len(out) < n && id <= after+10000; id++ {
		if b, ok := l.events[id]; ok {
			out = append(out, b)
		}
	}
	return out, l.err
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestWindowsMonitorReportsWouldRefuse: in monitor mode the Windows
// control reads the Security log's 4624 events and reports the logons
// through LogonUI of users with no enrolled factor, once each, from the
// agent's start on; runas, services, network logons, Windows' own
// accounts and enrolled users (any case) are not reported; an unreadable
// event is counted, not reported; a cleared log starts again.
func TestWindowsMonitorReportsWouldRefuse(t *testing.T) {
	ctx := context.Background()
	lg := &fakeLog{}
	lg.add(t, 100, ">tanaka<", ">before-start<") // before the agent started: not reported
	em := &controltest.Emitter{}
	cp := &loginmfa.CredProvOptions{Registry: &mapRegistry{}, DLL: "x", Logons: lg,
		MSISHA256: func() (string, error) { return "", nil }, PipeCheck: func(context.Context) error { return nil }}
	c := loginmfa.New(loginmfa.Options{Emitter: em, CredProv: cp, Users: func() []string { return []string{"Tanaka"} }})
	monitor := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}
	if err := c.Apply(ctx, monitor); err != nil {
		t.Fatal(err)
	}
	lg.add(t, 101)                                                 // tanaka (enrolled as Tanaka): allowed
	lg.add(t, 102, ">tanaka<", ">suzuki<")                         // not enrolled: would refuse
	lg.add(t, 103, ">tanaka<", ">sato<", ">2</Data>", ">7</Data>") // unlock: would refuse
	lg.add(t, 104, ">tanaka<", ">ito<", "User32 ", "seclogo")      // runas: not LogonUI
	lg.add(t, 105, ">tanaka<", ">svc<", ">2</Data>", ">5</Data>")  // service
	lg.add(t, 106, ">tanaka<", ">DWM-1<", "S-1-5-21-3623811015-3361044348-30300820-1013", "S-1-5-90-0-1")
	lg.add(t, 107, ">tanaka<", ">tana&#x1b;ka<")                                                // hostile: counted, not reported
	lg.add(t, 108, ">tanaka<", ">suzuki<", ">2</Data>", ">10</Data>", "127.0.0.1", "192.0.2.7") // RDP
	if err := c.Apply(ctx, monitor); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, e := range em.Events() {
		if e.Kind != loginmfa.KindWouldRefuse {
			t.Fatalf("event %v", e)
		}
		got[e.Attrs["record_id"]] = e.Attrs
	}
	if len(got) != 3 || got["102"]["user"] != "suzuki" || got["103"]["logon_type"] != "unlock" ||
		got["108"]["logon_type"] != "remote_interactive" || got["108"]["host"] != "192.0.2.7" || got["102"]["source"] != "security-4624" ||
		got["102"]["reason"] != "not_enrolled" || got["102"]["domain"] != "CITY" {
		t.Fatalf("events %v", got)
	}
	st, err := c.Status(ctx)
	if err != nil || st.State != mamoriv1.ControlState_CONTROL_STATE_MONITORING || st.Evidence["would_refuse"] != "3" ||
		st.Evidence["logon_records"] != "security-4624" || st.Evidence["logon_records_unreadable"] != "1" {
		t.Fatalf("status %v %v", st, err)
	}
	if st.DetailId != "detail.loginmfa.cp-monitor-logons" || len(st.DetailArgs) != 1 || st.DetailArgs[0] != "3" {
		t.Fatalf("detail %s %v", st.DetailId, st.DetailArgs)
	}

	// Nothing new: nothing reported again.
	if err := c.Apply(ctx, monitor); err != nil || len(em.Events()) != 0 {
		t.Fatalf("second round: %v, events reported again", err)
	}

	// The log cannot be read: said in the evidence, nothing reported.
	// (Events() forgets what it returned.)
	lg.err = errors.New("access denied")
	if err := c.Apply(ctx, monitor); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); !strings.Contains(st.Evidence["logon_records"], "access denied") {
		t.Fatalf("evidence %v", st.Evidence)
	}
	lg.err = nil

	// Cleared: record IDs start again; the new logon is reported.
	lg.mu.Lock()
	lg.events = nil
	lg.mu.Unlock()
	lg.add(t, 1, ">tanaka<", ">kato<")
	if err := c.Apply(ctx, monitor); err != nil {
		t.Fatal(err)
	}
	if ev := em.Events(); len(ev) != 1 || ev[0].Attrs["user"] != "kato" {
		t.Fatalf("after a clear: %v", ev)
	}

	// The emitter refuses: the logon is reported next round, once.
	lg.add(t, 2, ">tanaka<", ">kimura<")
	em.SetErr(errors.New("spool full"))
	c.Apply(ctx, monitor) //nolint:errcheck
	em.SetErr(nil)
	if err := c.Apply(ctx, monitor); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range em.Events() {
		if e.Attrs["user"] == "kimura" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("kimura reported %d times", n)
	}
}
