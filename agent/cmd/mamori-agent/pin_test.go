package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/agent/cli"
	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// TestPINEnrolCommand: `mamori-agent mfa pin-enroll USER` with the PIN
// piped twice creates a PIN key the TPM (simulator) accepts; mismatched
// PINs and rule-breaking PINs change nothing; the PIN is never printed.
func TestPINEnrolCommand(t *testing.T) {
	testenv.RequireRoot(t)
	stateDir := t.TempDir()
	cfg := config.Config{StateDir: stateDir}
	tp := tpmtest.Open(t, 1)
	open := func() (transport.TPMCloser, error) { return nopCloser{tp}, nil }
	p := i18n.NewPrinter(i18n.English)
	enrol := func(input string) (int, string) {
		in := pipe(t, input)
		var out bytes.Buffer
		rc := doPIN(cfg, cli.Invocation{Command: "mfa pin-enroll", User: "tanaka"}, p, in, &out, &out, open)
		return rc, out.String()
	}
	keyFile := filepath.Join(stateDir, "mfa", "pin", "tanaka.key")
	if rc, out := enrol("739154\n739155\n"); rc == 0 || !strings.Contains(out, "differ") {
		t.Fatalf("mismatch: rc=%d %s", rc, out)
	}
	if rc, out := enrol("1234\n1234\n"); rc == 0 || !strings.Contains(out, "6 to 64") {
		t.Fatalf("short PIN: rc=%d %s", rc, out)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a key file after failures: %v", err)
	}
	rc, out := enrol("739154\n739154\n")
	if rc != 0 || strings.Contains(out, "739154") {
		t.Fatalf("enrol: rc=%d %s", rc, out)
	}
	pins := &mfa.PINKeys{Dir: filepath.Dir(keyFile), TPM: mfa.NewTPM(tp)}
	if err := pins.Check("tanaka", []byte("739154")); err != nil {
		t.Fatalf("enrolled PIN: %v", err)
	}
	if err := pins.Check("tanaka", []byte("739155")); err == nil {
		t.Fatal("another PIN accepted")
	}
	tpmtest.SetDictionaryAttack(t, tp, 3, 600, 600)
	var o bytes.Buffer
	if rc := doPIN(cfg, cli.Invocation{Command: "mfa pin-remove", User: "tanaka"}, p, nil, &o, &o, open); rc != 0 {
		t.Fatalf("remove: %s", o.String())
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("key file after remove: %v", err)
	}
	// No TPM: a clear error.
	o.Reset()
	noTPM := func() (transport.TPMCloser, error) { return nil, tpm.ErrNoTPM }
	if rc := doPIN(cfg, cli.Invocation{Command: "mfa pin-enroll", User: "tanaka"}, p, pipe(t, ""), &o, &o, noTPM); rc == 0 || !strings.Contains(o.String(), "needs this terminal's TPM") {
		t.Fatalf("no TPM: rc=%d %s", rc, o.String())
	}
}

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

func pipe(t *testing.T, s string) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(s)
	w.Close()
	t.Cleanup(func() { r.Close() })
	return r
}
