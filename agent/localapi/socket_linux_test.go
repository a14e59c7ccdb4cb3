package localapi

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/mfa"
)

func ask(t *testing.T, path string, r Request) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, _ := AppendRequest(nil, r)
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}

func TestSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "agent.sock")
	fv := &fixedVerifier{v: mfa.Locked}
	s := &Server{Path: path, Verifier: fv, AllowUID: uint32(os.Geteuid())}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600 | os.ModeSocket} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v, %v; want %v", p, fi.Mode(), err, want)
		}
	}
	got, err := ask(t, path, Request{User: "tanaka", Service: "sshd", RHost: "h", Code: "123456"})
	if err != nil || string(got) != "\x00\x00\x00\x02\x01\x02" {
		t.Fatalf("answer %q, %v; want locked", got, err)
	}
	if len(fv.seen) != 1 || fv.seen[0].Gone == nil {
		t.Fatalf("verifier saw %+v", fv.seen)
	}
	if seen := fv.seen[0]; seen.User != "tanaka" || seen.Service != "sshd" || seen.RHost != "h" || seen.Code != "123456" || seen.Method != 0 {
		t.Fatalf("verifier saw %+v", fv.seen)
	}
	// Version 2: the method question, and a PIN verification.
	got, err = ask(t, path, Request{Version: Version2, Op: OpMethod, User: "pin-user"})
	if err != nil || string(got) != "\x00\x00\x00\x02\x02\x01" {
		t.Fatalf("method? answer %q, %v; want v2 PIN", got, err)
	}
	got, err = ask(t, path, Request{Version: Version2, Op: OpMethod, User: "tanaka"})
	if err != nil || string(got) != "\x00\x00\x00\x02\x02\x00" {
		t.Fatalf("method? answer %q, %v; want v2 TOTP", got, err)
	}
	got, err = ask(t, path, Request{Version: Version2, Op: OpVerify, Method: mfa.MethodPIN, User: "pin-user", Code: "739154"})
	if err != nil || string(got) != "\x00\x00\x00\x02\x02\x02" || len(fv.seen) != 2 || fv.seen[1].Method != mfa.MethodPIN || fv.seen[1].Code != "739154" {
		t.Fatalf("PIN verify answer %q, %v, seen %+v", got, err, fv.seen)
	}
	fv.seen = fv.seen[:1]
	s.Stop()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}

	// A peer of another uid gets no answer at all.
	s = &Server{Path: path, Verifier: fv, AllowUID: uint32(os.Geteuid()) + 4242}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if got, _ := ask(t, path, Request{User: "tanaka", Code: "123456"}); len(got) != 0 || len(fv.seen) != 1 {
		t.Fatalf("peer of another uid answered %q (verifier calls %d)", got, len(fv.seen))
	}
}
