package mfa_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

func TestValidatePIN(t *testing.T) {
	tests := []struct {
		pin string
		ok  bool
	}{
		{"482917", true},
		{"correct horse", true},
		{"暗証番号です", true},
		{"12345", false},
		{strings.Repeat("9", 65), false},
		{"1234\n56", false},
		{"ABCDE-FGHJK", false}, // the shape of a recovery code
		{"2345678923", false},  // ditto, digits only
	}
	for _, tc := range tests {
		if err := mfa.ValidatePIN(tc.pin); (err == nil) != tc.ok {
			t.Errorf("ValidatePIN(%q) = %v; want ok=%v", tc.pin, err, tc.ok)
		} else if err != nil && strings.Contains(err.Error(), tc.pin) {
			t.Errorf("error quotes the PIN: %v", err)
		}
	}
}

// TestPINMethod: a user with a PIN key is asked for the PIN; the right PIN
// passes through the TPM, a wrong one fails, the TPM's DA lockout answers
// Locked (for the right PIN too), a recovery code still works, and no PIN
// reaches an event.
func TestPINMethod(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfa")
	tp := tpmtest.Open(t, 1)
	tpmtest.SetDictionaryAttack(t, tp, 4, 600, 600)
	mt := mfa.NewTPM(tp)
	pins := &mfa.PINKeys{Dir: filepath.Join(dir, "pin"), TPM: mt}
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events, cfg.Now, cfg.Sealer, cfg.PINs = dir, ev, c.now, mfa.TPMSealer{TPM: mt}, pins
	cfg.MaxFailures = 10 // the TPM's lockout comes first here
	v, err := mfa.Open(cfg, "dev-1")
	must(t, err)
	tanaka, suzuki := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "suzuki")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", tanaka, suzuki)))

	const pin = "739154"
	if err := pins.Enroll("tanaka", []byte("123")); !errors.Is(err, mfa.ErrPINRules) {
		t.Fatalf("short PIN enrolled: %v", err)
	}
	if err := pins.Enroll("../etc", []byte(pin)); err == nil {
		t.Fatal("PIN key for a user name with a path in it")
	}
	must(t, pins.Enroll("tanaka", []byte(pin)))
	fi, err := os.Stat(filepath.Join(dir, "pin", "tanaka.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("PIN key file: %v %v", fi, err)
	}
	if m := v.Method(t.Context(), "tanaka"); m != mfa.MethodPIN {
		t.Fatalf("tanaka's method %v", m)
	}
	if m := v.Method(t.Context(), "suzuki"); m != mfa.MethodTOTP {
		t.Fatalf("suzuki's method %v", m)
	}
	pinAttempt := func(code string) mfa.Attempt {
		return mfa.Attempt{User: "tanaka", Service: "sshd", RHost: "192.0.2.1", Code: code, Method: mfa.MethodPIN}
	}
	steps := []struct {
		name string
		a    mfa.Attempt
		want mfa.Verdict
	}{
		{"right PIN", pinAttempt(pin), mfa.Allow},
		{"right PIN again (no replay rule for a PIN)", pinAttempt(pin), mfa.Allow},
		{"wrong PIN", pinAttempt("000000"), mfa.Deny},
		{"suzuki's TOTP code for suzuki", mfa.Attempt{User: "suzuki", Code: suzuki.Code(c.t)}, mfa.Allow},
		{"tanaka's PIN as suzuki's PIN", mfa.Attempt{User: "suzuki", Code: pin, Method: mfa.MethodPIN}, mfa.Deny},
		{"recovery code at the PIN prompt", pinAttempt(tanaka.RecoveryCodes[0]), mfa.Allow},
		{"wrong PIN 2", pinAttempt("000001"), mfa.Deny},
		{"wrong PIN 3", pinAttempt("000002"), mfa.Deny},
		{"wrong PIN 4: the TPM's threshold", pinAttempt("000003"), mfa.Deny},
		{"right PIN during the TPM's lockout", pinAttempt(pin), mfa.Locked},
	}
	for _, s := range steps {
		if got := v.Verify(t.Context(), s.a); got != s.want {
			t.Fatalf("%s: %v; want %v", s.name, got, s.want)
		}
	}
	evs := ev.Events()
	last := evs[len(evs)-1]
	if last.Kind != mfa.KindLockout || last.Attrs["reason"] != "tpm_lockout" {
		t.Fatalf("last event %+v; want mfa_lockout for the TPM", last)
	}
	if evs[len(evs)-2].Attrs["reason"] != "tpm_lockout" {
		t.Fatalf("failure event %+v; want reason tpm_lockout", evs[len(evs)-2])
	}
	var pinEvents int
	for _, e := range evs {
		if e.Attrs["method"] == "pin" {
			pinEvents++
		}
		for _, val := range e.Attrs {
			if strings.Contains(val, pin) || strings.Contains(val, "00000") {
				t.Fatalf("a PIN in event %+v", e)
			}
		}
	}
	if pinEvents < 6 {
		t.Fatalf("%d events with method=pin", pinEvents)
	}
	// No TPM (the state directory on a machine without one): the PIN
	// user is refused, fail closed.
	cfg.PINs = &mfa.PINKeys{Dir: pins.Dir}
	cfg.Sealer = nil
	if _, err := mfa.Open(cfg, "dev-1"); err == nil || !strings.Contains(err.Error(), "no TPM is usable") {
		t.Fatalf("TPM-sealed key without a TPM: %v", err)
	}
	cfg.Dir = filepath.Join(t.TempDir(), "mfa")
	v2, err := mfa.Open(cfg, "dev-1")
	must(t, err)
	tpmtest.SetDictionaryAttack(t, tp, 4, 600, 600)
	if got := v2.Verify(t.Context(), pinAttempt(pin)); got != mfa.Deny {
		t.Fatalf("PIN without a TPM: %v", got)
	}
}
