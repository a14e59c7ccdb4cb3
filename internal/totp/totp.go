// Package totp implements HOTP (RFC 4226) and TOTP (RFC 6238) with the rules
// every mamori verification follows: constant-time comparison, a ±Skew
// step window, and a replay guard (a step once accepted is never accepted
// again for that user). It has no I/O; callers persist the replay state.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the HMAC hash.
type Algorithm string

// Algorithms RFC 6238 names.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// Params are a TOTP configuration. The zero value is not valid; use
// Default() (SHA-1, 6 digits, 30 s: what every authenticator app accepts).
type Params struct {
	Algorithm Algorithm
	Digits    int
	Period    time.Duration
	// Skew is how many steps before and after the current one count.
	Skew int
}

// Default is SHA-1, 6 digits, 30 s, ±1 step.
func Default() Params { return Params{Algorithm: SHA1, Digits: 6, Period: 30 * time.Second, Skew: 1} }

// Validate refuses parameters no authenticator supports.
func (p Params) Validate() error {
	if _, err := p.Algorithm.hash(); err != nil {
		return err
	}
	if p.Digits < 6 || p.Digits > 8 {
		return fmt.Errorf("totp: %d digits; use 6 to 8", p.Digits)
	}
	if p.Period < time.Second || p.Period%time.Second != 0 {
		return fmt.Errorf("totp: period %v; use whole seconds", p.Period)
	}
	if p.Skew < 0 || p.Skew > 10 {
		return fmt.Errorf("totp: skew %d; use 0 to 10", p.Skew)
	}
	return nil
}

func (a Algorithm) hash() (func() hash.Hash, error) {
	switch a {
	case SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("totp: unknown algorithm %q", a)
}

// ErrInvalid is the one answer to a wrong, malformed or replayed code:
// callers must not tell a guesser which.
var ErrInvalid = errors.New("code refused")

// ErrReplayed: the code is right for a step at or before the last one
// accepted (used already, here or — with fleet-wide replay state —
// on another terminal). Verify returns it only when no later step matched.
var ErrReplayed = errors.New("code already used")

// Secret is a TOTP seed. It never prints itself.
type Secret []byte

// String redacts.
func (Secret) String() string { return "[secret]" }

// GoString redacts.
func (Secret) GoString() string { return "[secret]" }

// NewSecret returns 20 random bytes (160 bits, RFC 4226's recommendation).
func NewSecret() (Secret, error) {
	s := make(Secret, 20)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("totp: random secret: %w", err)
	}
	return s, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Base32 is the seed as authenticator apps take it (no padding).
func (s Secret) Base32() string { return b32.EncodeToString(s) }

// ParseBase32 reads a seed as printed on hardware tokens: case, spaces
// and padding do not matter.
func ParseBase32(txt string) (Secret, error) {
	txt = strings.ToUpper(strings.Join(strings.Fields(txt), ""))
	txt = strings.TrimRight(txt, "=")
	s, err := b32.DecodeString(txt)
	if err != nil || len(s) < 10 {
		return nil, errors.New("totp: seed is not base32 of at least 80 bits")
	}
	return s, nil
}

// HOTP computes the RFC 4226 value for counter.
func HOTP(secret []byte, counter uint64, alg Algorithm, digits int) (string, error) {
	h, err := alg.hash()
	if err != nil {
		return "", err
	}
	if digits < 1 || digits > 9 {
		return "", fmt.Errorf("totp: %d digits", digits)
	}
	m := hmac.New(h, secret)
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], counter)
	m.Write(c[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod), nil
}

// Step is the time step of t.
func (p Params) Step(t time.Time) int64 { return t.Unix() / int64(p.Period/time.Second) }

// Code is the TOTP value at t.
func (p Params) Code(secret []byte, t time.Time) (string, error) {
	return HOTP(secret, uint64(p.Step(t)), p.Algorithm, p.Digits)
}

// Verify checks code at time now and returns the step it matched. lastStep
// is the last step accepted for this secret (0 if none): a step at or
// before it is refused, so a code is never accepted twice, and neither is
// an older one. Every candidate is computed and compared in constant time.
func (p Params) Verify(secret []byte, code string, now time.Time, lastStep int64) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(code) != p.Digits || strings.Trim(code, "0123456789") != "" {
		return 0, ErrInvalid
	}
	cur := p.Step(now)
	var matched int64 = -1
	replayed := false
	for d := -p.Skew; d <= p.Skew; d++ {
		st := cur + int64(d)
		want, err := HOTP(secret, uint64(st), p.Algorithm, p.Digits)
		if err != nil {
			return 0, err
		}
		eq := subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
		if eq && st > lastStep && matched < 0 {
			matched = st
		}
		if eq && st <= lastStep {
			replayed = true
		}
	}
	if matched < 0 {
		if replayed {
			return 0, ErrReplayed
		}
		return 0, ErrInvalid
	}
	return matched, nil
}

// URI is the otpauth:// key URI authenticator apps scan
// (https://github.com/google/google-authenticator/wiki/Key-Uri-Format).
func (p Params) URI(issuer, account string, secret Secret) string {
	v := url.Values{}
	v.Set("secret", secret.Base32())
	v.Set("issuer", issuer)
	v.Set("algorithm", string(p.Algorithm))
	v.Set("digits", strconv.Itoa(p.Digits))
	v.Set("period", strconv.Itoa(int(p.Period/time.Second)))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: v.Encode()}
	return u.String()
}
