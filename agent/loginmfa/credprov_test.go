package loginmfa_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// mapRegistry is CPRegistry in memory.
type mapRegistry struct {
	mu sync.Mutex
	m  map[string]map[string]string
}

func (r *mapRegistry) Get(key, name string) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[strings.ToLower(key)][name]
	return v, ok, nil
}

func (r *mapRegistry) Set(key, name, value string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]map[string]string{}
	}
	k := strings.ToLower(key)
	if r.m[k] == nil {
		r.m[k] = map[string]string{}
	}
	r.m[k][name] = value
	return nil
}

func (r *mapRegistry) DeleteKey(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, strings.ToLower(key))
	return nil
}

// TestCredProvControl runs the Windows control's whole life against an
// in-memory registry; TestWindowsCredProvControl runs the same scenario
// against wine's registry (wine_linux_test.go).
func TestCredProvControl(t *testing.T) {
	credProvScenario(t, &mapRegistry{}, t.TempDir())
}

// credProvScenario: refuse with nobody enrolled; enforce registers and
// reads back ENFORCED; a deleted filter key is a drift event and is
// re-applied; a replaced DLL is FAILED and unregisters; monitor removes
// everything and reports MONITORING.
func credProvScenario(t *testing.T, reg loginmfa.CPRegistry, dir string) {
	ctx := context.Background()
	dll := filepath.Join(dir, "mamori-cp.dll")
	good := []byte("MZ pretend this is mamori-cp.dll")
	if err := os.WriteFile(dll, good, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	users, grace := []string{}, []string(nil)
	var pipeErr error
	em := &controltest.Emitter{}
	cp := &loginmfa.CredProvOptions{Registry: reg, DLL: dll,
		MSISHA256: func() (string, error) { return hex.EncodeToString(sum[:]), nil },
		PipeCheck: func(context.Context) error { return pipeErr },
		Pipe:      `\\.\pipe\mamori-test`, BreakGlass: `C:\mamori-test\breakglass`}
	c := loginmfa.New(loginmfa.Options{Emitter: em, CredProv: cp, Users: func() []string { return users },
		GraceUsers: func() []string { return grace }})
	enforce := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}
	status := func(want mamoriv1.ControlState) *mamoriv1.ControlStatus {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil || st.State != want {
			t.Fatalf("status %v (%v), want %v: %v", st.GetState(), err, want, st.GetEvidence())
		}
		return st
	}
	registered := func() bool {
		_, p, _ := reg.Get(loginmfa.ProviderKey, "")
		_, f, _ := reg.Get(loginmfa.FilterKey, "")
		return p || f
	}

	// Nobody enrolled: refuse, register nothing.
	if err := c.Apply(ctx, enforce); err == nil || !strings.Contains(err.Error(), "nobody allowed") {
		t.Fatalf("apply with nobody enrolled: %v", err)
	}
	if registered() {
		t.Fatal("registered although nobody is enrolled")
	}
	status(mamoriv1.ControlState_CONTROL_STATE_FAILED)

	// The pipe does not answer: refuse too.
	users, pipeErr = []string{"tanaka"}, errors.New("no pipe")
	if err := c.Apply(ctx, enforce); err == nil || registered() {
		t.Fatalf("apply with the pipe down: %v, registered %v", err, registered())
	}
	pipeErr = nil

	// Enforce: registered, read back.
	if err := c.Apply(ctx, enforce); err != nil {
		t.Fatal(err)
	}
	st := status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)
	if st.Evidence["registry"] != "registered" || st.Evidence["dll.expected_from"] != "msi" || st.Evidence["pipe"] != "answers" {
		t.Fatalf("evidence %v", st.Evidence)
	}
	for _, w := range loginmfa.WantCredProv(cp) {
		if v, ok, err := reg.Get(w.Key, w.Name); err != nil || !ok || v != w.Value {
			t.Fatalf("%s = %q %v %v, want %q", w, v, ok, err, w.Value)
		}
	}
	if len(em.Events()) != 0 {
		t.Fatal("events on the first registration")
	}
	// Grace logins (a user let in without a factor) make it DEGRADED.
	grace = []string{"suzuki"}
	if st := status(mamoriv1.ControlState_CONTROL_STATE_DEGRADED); st.Evidence["grace_logins"] != "1" {
		t.Fatalf("evidence %v", st.Evidence)
	}
	grace = nil

	// Tamper: the filter key deleted → drift, re-applied.
	if err := reg.DeleteKey(loginmfa.FilterKey); err != nil {
		t.Fatal(err)
	}
	status(mamoriv1.ControlState_CONTROL_STATE_FAILED) // seen before the next round
	if err := c.Apply(ctx, enforce); err != nil {
		t.Fatal(err)
	}
	ev := em.Events()
	if len(ev) != 1 || ev[0].Kind != loginmfa.KindDrift || !strings.Contains(ev[0].Attrs["value"], "Credential Provider Filters") ||
		ev[0].Attrs["reapplied"] != "true" {
		t.Fatalf("drift events %+v", ev)
	}
	status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)

	// Tamper: the DLL replaced → FAILED, and unregistered (a provider
	// that is not ours must not sit in LogonUI).
	if err := os.WriteFile(dll, []byte("MZ something else"), 0o644); err != nil {
		t.Fatal(err)
	}
	st = status(mamoriv1.ControlState_CONTROL_STATE_FAILED)
	if !strings.Contains(st.Detail, "not the expected one") {
		t.Fatalf("detail %q", st.Detail)
	}
	if err := c.Apply(ctx, enforce); err == nil || !strings.Contains(err.Error(), "not the expected one") {
		t.Fatalf("apply with a replaced DLL: %v", err)
	}
	if registered() {
		t.Fatal("still registered with a replaced DLL")
	}
	if err := os.WriteFile(dll, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, enforce); err != nil {
		t.Fatal(err)
	}
	status(mamoriv1.ControlState_CONTROL_STATE_ENFORCED)

	// Monitor: everything removed, nothing hidden.
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil {
		t.Fatal(err)
	}
	for _, w := range loginmfa.WantCredProv(cp) {
		if _, ok, _ := reg.Get(w.Key, w.Name); ok {
			t.Fatalf("%s still there in monitor mode", w)
		}
	}
	status(mamoriv1.ControlState_CONTROL_STATE_MONITORING)
	// A second revert changes nothing.
	if err := c.Apply(ctx, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}); err != nil {
		t.Fatal(err)
	}
}
