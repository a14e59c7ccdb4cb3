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
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T, dir string, c *clock, ev *controltest.Emitter) *mfa.Verifier {
	t.Helper()
	cfg := mfa.DefaultConfig()
	cfg.Dir, cfg.Events, cfg.Now = dir, ev, c.now
	v, err := mfa.Open(cfg, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func kinds(evs []controltest.Event) string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, e.Kind)
	}
	return strings.Join(ks, ",")
}

func TestVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	tanaka, suzuki := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "suzuki")
	if v.BundleVersion() != "" {
		t.Fatal("version before any bundle")
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("before any bundle: %v; want deny", got)
	}
	if err := v.TakeBundle(t.Context(), "dev-2", mfatest.Seal(t, v.PublicKey(), "dev-2", "g1", tanaka)); err != nil {
		t.Fatal(err) // sealed for dev-2 and opened as dev-2: fine at this layer
	}
	if err := v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-2", "g1", tanaka)); err == nil {
		t.Fatal("a bundle for another device was taken")
	}
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1.p1", tanaka, suzuki)))
	ev.Events()

	a := mfa.Attempt{User: "tanaka", Service: "login", RHost: "10.0.0.9", Code: tanaka.Code(c.t)}
	steps := []struct {
		name string
		a    mfa.Attempt
		want mfa.Verdict
	}{
		{"right code", a, mfa.Allow},
		{"replayed", a, mfa.Deny},
		{"other user's code", mfa.Attempt{User: "suzuki", Code: tanaka.Code(c.t)}, mfa.Deny},
		{"unknown user", mfa.Attempt{User: "sato", Code: "123456"}, mfa.Deny},
		{"next step's code", mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t.Add(30 * time.Second))}, mfa.Allow},
		{"recovery code", mfa.Attempt{User: "suzuki", Code: strings.ToLower(suzuki.RecoveryCodes[1])}, mfa.Allow},
		{"recovery code again", mfa.Attempt{User: "suzuki", Code: suzuki.RecoveryCodes[1]}, mfa.Deny},
		{"tanaka cannot use suzuki's code", mfa.Attempt{User: "tanaka", Code: suzuki.RecoveryCodes[0]}, mfa.Deny},
	}
	for _, s := range steps {
		if got := v.Verify(t.Context(), s.a); got != s.want {
			t.Fatalf("%s: %v; want %v", s.name, got, s.want)
		}
	}
	evs := ev.Events()
	if got, want := kinds(evs), "mfa_success,mfa_failure,mfa_failure,mfa_failure,mfa_success,mfa_recovery_used,mfa_failure,mfa_failure"; got != want {
		t.Fatalf("events %s; want %s", got, want)
	}
	if e := evs[0]; e.Control != "login-mfa" || e.Attrs["user"] != "tanaka" || e.Attrs["service"] != "login" || e.Attrs["rhost"] != "10.0.0.9" {
		t.Fatalf("first event %+v", e)
	}
	for _, e := range evs {
		for _, val := range e.Attrs {
			if val == a.Code || strings.Contains(strings.ToUpper(val), suzuki.RecoveryCodes[1][:5]) {
				t.Fatalf("a code in event %+v", e)
			}
		}
	}

	// A restart keeps the bundle and the replay state.
	c.t = c.t.Add(10 * time.Second)
	must(t, v.Close())
	v2 := open(t, dir, c, ev)
	if v2.BundleVersion() != "g1.p1" {
		t.Fatalf("bundle after restart: %q", v2.BundleVersion())
	}
	if got := v2.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t.Add(30 * time.Second))}); got != mfa.Deny {
		t.Fatalf("replay after restart: %v", got)
	}
	// A new bundle (server does not know of the use yet) does not bring
	// back a used recovery code.
	must(t, v2.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v2.PublicKey(), "dev-1", "g2.p1", tanaka, suzuki)))
	if got := v2.Verify(t.Context(), mfa.Attempt{User: "suzuki", Code: suzuki.RecoveryCodes[1]}); got != mfa.Deny {
		t.Fatalf("used recovery code after a new bundle: %v", got)
	}
	for _, f := range []string{"bundle.key.sealed", "seal.key", "bundle.sealed", "verify.log", "breakglass"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v; want mode 0600", f, fi.Mode(), err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if strings.Contains(string(b), tanaka.Secret.Base32()) || strings.Contains(string(b), string(tanaka.Secret)) {
			t.Errorf("%s holds the TOTP secret in the clear", f)
		}
	}
}

func TestLockout(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, t.TempDir(), c, ev)
	u := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", u)))
	for i := range 4 {
		if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: "000000"}); got != mfa.Deny {
			t.Fatalf("failure %d: %v", i+1, got)
		}
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: "000000"}); got != mfa.Locked {
		t.Fatalf("5th failure: %v; want locked", got)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Locked {
		t.Fatalf("right code while locked: %v; want locked", got)
	}
	if !strings.Contains(kinds(ev.Events()), "mfa_lockout") {
		t.Fatal("no mfa_lockout event")
	}
	c.t = c.t.Add(61 * time.Second)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: u.Code(c.t)}); got != mfa.Allow {
		t.Fatalf("right code after the lock-out: %v", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLoginNotRecordedIsRefused: a login whose event the spool cannot take
// (a disk full beyond its reserve) is refused, the code spent; once events
// can be recorded again the next code is accepted and recorded.
func TestLoginNotRecordedIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	tanaka := mfatest.NewUser(t, "tanaka")
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g1", tanaka)))
	ev.Events()
	ev.SetErr(errors.New("spool full: events dropped and counted: no space left on device"))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("a login that cannot be recorded: %v; want deny", got)
	}
	ev.SetErr(nil)
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t)}); got != mfa.Deny {
		t.Fatalf("the spent code again: %v; want deny", got)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "tanaka", Code: tanaka.Code(c.t.Add(30 * time.Second))}); got != mfa.Allow {
		t.Fatalf("next code with room again: %v; want allow", got)
	}
	if got := kinds(ev.Events()); got != "mfa_failure,mfa_success" {
		t.Fatalf("events %s", got)
	}
}
