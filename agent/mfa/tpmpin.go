package mfa

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"unicode/utf8"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/tpm"
)

// TPM-bound PINs (internal/tpm/pinkey.go): a user with a PIN key on this
// terminal is asked for the PIN instead of a TOTP code. The agent keeps
// the key's blob in <mfa dir>/pin/USER.key (0600); the key itself never
// leaves the TPM, and the TPM's dictionary-attack protection limits
// guessing. Enrolment is a local root action (mamori-agent mfa
// pin-enroll USER); a PIN is per user and per terminal.

// Method is the second factor the agent asks a user for.
type Method uint8

// Methods, as sent over the local socket (agent/localapi).
const (
	MethodTOTP Method = 0 // TOTP code (or recovery code)
	MethodPIN  Method = 1 // TPM-bound PIN (or recovery code)
)

func (m Method) String() string {
	if m == MethodPIN {
		return "pin"
	}
	return "totp"
}

// PIN rules: 6 to 64 characters, no control characters, and not the
// shape of a recovery code (the PIN prompt accepts those too).
const (
	MinPIN = 6
	MaxPIN = 64
)

// ErrPINRules is returned by ValidatePIN; it never quotes the PIN.
var ErrPINRules = fmt.Errorf("the PIN must be %d to %d characters, printable, and not look like a recovery code", MinPIN, MaxPIN)

// ValidatePIN checks a new PIN against the rules.
func ValidatePIN(pin string) error {
	n := utf8.RuneCountInString(pin)
	if n < MinPIN || n > MaxPIN || !utf8.ValidString(pin) {
		return ErrPINRules
	}
	for _, r := range pin {
		if r < 0x20 || r == 0x7f {
			return ErrPINRules
		}
	}
	if mfabundle.LooksLikeRecoveryCode(mfabundle.NormalizeCode(pin)) {
		return ErrPINRules
	}
	return nil
}

var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$`)

// PINKeys is the store of PIN key blobs, and the TPM they belong to.
type PINKeys struct {
	// Dir holds USER.key files (created 0700).
	Dir string
	// TPM verifies PINs; nil when the terminal has none (then a user
	// with a PIN key is refused: fail closed; recovery codes still work).
	TPM *TPM
}

func (p *PINKeys) path(user string) (string, error) {
	if !userName.MatchString(user) {
		return "", errors.New("PIN key: user name has characters a PIN key file cannot carry")
	}
	return filepath.Join(p.Dir, user+".key"), nil
}

// Enrolled reports whether user has a PIN key on this terminal.
func (p *PINKeys) Enrolled(user string) bool {
	if p == nil {
		return false
	}
	path, err := p.path(user)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

// Enroll creates a PIN key for user in the TPM with pin as its
// authorisation value and stores its blob, replacing an earlier one.
func (p *PINKeys) Enroll(user string, pin []byte) error {
	if err := ValidatePIN(string(pin)); err != nil {
		return err
	}
	if p.TPM == nil {
		return fmt.Errorf("PIN keys need a TPM: %w", tpm.ErrNoTPM)
	}
	path, err := p.path(user)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("PIN key: %w", err)
	}
	var blob tpm.Blob
	if err := p.TPM.do(func(t transport.TPM) (err error) { blob, err = tpm.CreatePINKey(t, pin); return }); err != nil {
		return err
	}
	b, err := blob.Encode()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("PIN key: %w", err)
	}
	return nil
}

// Remove deletes user's PIN key (the user goes back to TOTP).
func (p *PINKeys) Remove(user string) error {
	path, err := p.path(user)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("PIN key: %w", err)
	}
	return nil
}

// Check verifies user's PIN in the TPM: nil when right, an error wrapping
// tpm.ErrWrongPIN or tpm.ErrLockedOut, or another error (no key, no TPM,
// blob does not load). Errors never carry the PIN.
func (p *PINKeys) Check(user string, pin []byte) error {
	if p == nil || p.TPM == nil {
		return fmt.Errorf("PIN: %w", tpm.ErrNoTPM)
	}
	path, err := p.path(user)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("PIN key: %w", err)
	}
	blob, err := tpm.DecodeBlob(b)
	if err != nil {
		return err
	}
	return p.TPM.do(func(t transport.TPM) error { return tpm.VerifyPIN(t, blob, pin) })
}

// Method tells the PAM module what to ask user for: the PIN when the user
// has a PIN key on this terminal, else a TOTP code.
func (v *Verifier) Method(_ context.Context, user string) Method {
	if v.cfg.PINs.Enrolled(user) {
		return MethodPIN
	}
	return MethodTOTP
}

// checkPIN is check for the PIN method. A TPM in DA lockout sets
// v.pinLockedOut so Verify answers Locked (the caller holds v.mu).
func (v *Verifier) checkPIN(ctx context.Context, a Attempt) (string, bool) {
	pin := []byte(a.Code)
	defer clear(pin)
	err := v.cfg.PINs.Check(a.User, pin)
	switch {
	case err == nil:
		return "pin", true
	case errors.Is(err, tpm.ErrLockedOut):
		v.pinLockedOut = true
	case errors.Is(err, tpm.ErrWrongPIN):
	default:
		v.log.ErrorContext(ctx, "PIN not verifiable; refusing", "user", a.User, "error", err)
	}
	return "pin", false
}
