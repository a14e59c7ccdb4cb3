package localapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
)

// frozenVerifier stands for an agent frozen between reading a request and
// checking it: it waits until the module has given up and closed its end.
type frozenVerifier struct {
	*mfa.Verifier
	closed <-chan struct{}
}

func (f frozenVerifier) Verify(ctx context.Context, a mfa.Attempt) mfa.Verdict {
	<-f.closed
	time.Sleep(50 * time.Millisecond) // the close reaches the socket
	return f.Verifier.Verify(ctx, a)
}

// TestFrozenAgentLoginTimedOut (issue #14 item 10): the module sends a
// right code and gives up waiting (closes the socket, as pam_mamori.so
// does after its timeout); the agent, resuming, records mfa_failure
// reason=timed_out — not mfa_success — over a real unix socket with the
// real verifier. The same code then is refused (spent).
func TestFrozenAgentLoginTimedOut(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)
	ev := &controltest.Emitter{}
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events, cfg.Now = filepath.Join(t.TempDir(), "mfa"), ev, func() time.Time { return now }
	v, err := mfa.Open(cfg, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	tanaka := mfatest.NewUser(t, "tanaka")
	if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", tanaka)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	s := &Server{Path: path, Verifier: frozenVerifier{v, closed}, AllowUID: uint32(os.Geteuid())}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := AppendRequest(nil, Request{Version: Version2, Op: OpVerify, Method: mfa.MethodTOTP, User: "tanaka", Service: "sshd", Code: tanaka.Code(now)})
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.Close() // the module's timeout
	close(closed)
	deadline := time.Now().Add(5 * time.Second)
	var evs []controltest.Event
	for len(evs) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		evs = ev.Events()
	}
	if len(evs) != 1 || evs[0].Kind != mfa.KindFailure || evs[0].Attrs["reason"] != "timed_out" {
		t.Fatalf("events %+v; want one mfa_failure reason=timed_out", evs)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(now)}); got != mfa.Deny {
		t.Fatalf("the timed-out code again: %v", got)
	}
}
