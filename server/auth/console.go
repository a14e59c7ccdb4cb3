package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

// Console sign-in: a password, stored as an argon2id hash, and a TOTP code.
// Sessions are random IDs; the server keeps only their SHA-256.

// Argon2id parameters: OWASP's minimum for argon2id (19 MiB, 2 passes,
// 1 lane), about 30 ms on one core of the test machine. They are stored in
// each hash, so raising them later keeps old hashes readable.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16

	// MinPasswordLength is the shortest password HashPassword accepts.
	MinPasswordLength = 12
	// MaxPasswordLength bounds the work one sign-in attempt can cause.
	MaxPasswordLength = 256
)

var b64 = base64.RawStdEncoding

// ErrWeakPassword: the password is too short or too long.
var ErrWeakPassword = fmt.Errorf("a password must have %d to %d characters", MinPasswordLength, MaxPasswordLength)

// HashPassword returns the PHC string of an argon2id hash of pw with a
// random salt: $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func HashPassword(pw Secret) (string, error) {
	if n := len([]rune(pw.Reveal())); n < MinPasswordLength || len(pw.Reveal()) > MaxPasswordLength {
		return "", ErrWeakPassword
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw.Reveal()), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches the PHC hash. A malformed hash
// never matches.
func CheckPassword(hash string, pw Secret) bool { return checkPassword(hash, pw) }

// HashSlot is one of a fixed number of places a password check may run:
// the slots bound how many checks run at once and the heap they take.
// x/crypto's argon2 allocates its 19 MiB work area per check and leaves
// it to the garbage collector, which lets such garbage pile up to the
// next cycle (a flood of checks grew the heap by 62–65 MiB with one
// slot); a slot collects it before it is handed on, so each slot holds
// at most one work area at a time. The collection costs a few
// milliseconds against the check's tens: the attacker pays for both.
// (An earlier version carried a copy of x/crypto's argon2 with a reusable
// work area; the project does not copy code from elsewhere, so it calls
// x/crypto and collects instead.) One goroutine uses a slot at a time.
type HashSlot struct{}

// CheckPassword is CheckPassword, its garbage collected before it returns.
func (s *HashSlot) CheckPassword(hash string, pw Secret) bool {
	defer runtime.GC()
	return checkPassword(hash, pw)
}

// BurnPasswordCheck is BurnPasswordCheck, its garbage collected before it
// returns.
func (s *HashSlot) BurnPasswordCheck(pw Secret) {
	defer runtime.GC()
	checkPassword(dummyHash, pw)
}

func checkPassword(hash string, pw Secret) bool {
	if len(pw.Reveal()) > MaxPasswordLength {
		return false
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	if len(want) > 64 || len(salt) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(pw.Reveal()), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when the login is unknown, so an unknown
// login costs as much time as a wrong password: the parameters are
// HashPassword's; salt and key are zero, which no password matches
// (short of a 256-bit preimage).
var dummyHash = fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
	b64.EncodeToString(make([]byte, argonSaltLen)), b64.EncodeToString(make([]byte, argonKeyLen)))

// BurnPasswordCheck spends the time of one password check.
func BurnPasswordCheck(pw Secret) { CheckPassword(dummyHash, pw) }

// TOTP parameters: RFC 6238 defaults that every authenticator app
// understands (SHA-1, 6 digits, 30 s).
const (
	TOTPPeriod = 30
	totpSkew   = 1 // one step either side, for clock drift
)

// NewTOTPSecret makes a TOTP seed for login and the otpauth:// URL an
// authenticator app reads (as text or QR code).
func NewTOTPSecret(login string) (secret Secret, url string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: "mamori console", AccountName: login, Period: TOTPPeriod,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", fmt.Errorf("generate TOTP secret: %w", err)
	}
	return Secret(k.Secret()), k.URL(), nil
}

// TOTPCode returns the code for secret at t (for tests and tools).
func TOTPCode(secret Secret, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret.Reveal(), t, totp.ValidateOpts{
		Period: TOTPPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// CheckTOTP checks code against secret at now, one step either side, and
// returns the time step it matched: the caller accepts each step once.
func CheckTOTP(secret Secret, code string, now time.Time) (step int64, ok bool) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / TOTPPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		s := cur + d
		want, err := TOTPCode(secret, time.Unix(s*TOTPPeriod, 0))
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return s, true
		}
	}
	return 0, false
}

// NewSessionID makes a random session ID (256 bits, URL-safe).
func NewSessionID() Secret {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return Secret(base64.RawURLEncoding.EncodeToString(b[:]))
}

// ErrMalformedSession: a cookie that cannot be a session ID.
var ErrMalformedSession = errors.New("malformed session ID")

// HashSessionID is how a session is stored and looked up.
func HashSessionID(id Secret) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(id.Reveal())
	if err != nil || len(raw) != 32 {
		return nil, ErrMalformedSession
	}
	sum := sha256.Sum256(raw)
	return sum[:], nil
}

// CSRFToken is the session's synchroniser token: derived from the secret
// session ID, so it needs no storage, differs per session, and cannot be
// computed by a page that does not know the session cookie.
func CSRFToken(id Secret) string {
	m := hmac.New(sha256.New, []byte(id.Reveal()))
	m.Write([]byte("mamori console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF compares a submitted token with the session's, in constant time.
func CheckCSRF(id Secret, token string) bool {
	return token != "" && hmac.Equal([]byte(CSRFToken(id)), []byte(token))
}

// CheckCSRFPair compares a double-submit cookie with the form's copy, in
// constant time.
func CheckCSRFPair(cookie, form string) bool {
	return cookie != "" && hmac.Equal([]byte(cookie), []byte(form))
}
