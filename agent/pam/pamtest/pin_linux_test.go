package pamtest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// TestPAMStackPIN: the real module asks the agent which factor a user has;
// a user with a TPM-bound PIN key is prompted for the PIN ("PIN" /
// Japanese), the agent checks it in the TPM (go-tpm-tools simulator), and
// the TPM's dictionary-attack lockout reaches the user as "locked".
func TestPAMStackPIN(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	tpmtest.SetDictionaryAttack(t, tp, 4, 600, 600)
	mt := mfa.NewTPM(tp)
	var pins *mfa.PINKeys
	s := newStackWith(t, func(c *mfa.Config) {
		pins = &mfa.PINKeys{Dir: filepath.Join(c.Dir, "pin"), TPM: mt}
		c.PINs, c.Sealer = pins, mfa.TPMSealer{TPM: mt}
		c.MaxFailures = 20 // let the TPM's lockout come first
	})
	tanaka, suzuki := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "suzuki")
	if err := s.verifier.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, s.verifier.PublicKey(), "dev-1", "g1.p1", tanaka, suzuki)); err != nil {
		t.Fatal(err)
	}
	const pin = "739154"
	if err := pins.Enroll("tanaka", []byte(pin)); err != nil {
		t.Fatal(err)
	}

	ok, out := s.login("tanaka", pin)
	if !ok || !strings.Contains(out, "PIN (or recovery code)") {
		t.Fatalf("right PIN: success=%v\n%s", ok, out)
	}
	s.want("wrong PIN", "tanaka", "000000", false)
	s.want("TOTP code where the PIN is asked", "tanaka", tanaka.Code(time.Now()), false)
	_, out = s.login("tanaka", "000001", "LANG=ja_JP.UTF-8")
	if !strings.Contains(out, "PIN（または回復コード）") {
		t.Fatalf("LANG=ja_JP: no Japanese PIN prompt in %q", out)
	}
	// suzuki has no PIN key: still the TOTP prompt and a TOTP code.
	ok, out = s.login("suzuki", suzuki.Code(time.Now()))
	if !ok || !strings.Contains(out, "Verification code") {
		t.Fatalf("suzuki with TOTP: success=%v\n%s", ok, out)
	}
	s.want("recovery code at the PIN prompt", "tanaka", tanaka.RecoveryCodes[0], true)

	// Three wrong PINs so far; the fourth reaches the TPM's threshold,
	// then even the right PIN is refused as locked out.
	s.want("wrong PIN at the threshold", "tanaka", "000002", false)
	ok, out = s.login("tanaka", pin)
	if ok || !strings.Contains(out, "Locked") {
		t.Fatalf("right PIN during the TPM's lockout: success=%v\n%s", ok, out)
	}
	for _, e := range s.events.Events() {
		for _, v := range e.Attrs {
			if strings.Contains(v, pin) || strings.Contains(v, "00000") {
				t.Fatalf("a PIN in event %+v", e)
			}
		}
	}
	// The agent down: no method answer, the module falls back to the
	// TOTP prompt, where only a break-glass recovery code can pass.
	s.stopAgent()
	defer s.startAgent()
	s.want("PIN with the agent down", "tanaka", pin, false)
	s.want("break-glass code with the agent down", "tanaka", tanaka.RecoveryCodes[1], true)
}
