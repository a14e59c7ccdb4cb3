package mfabundle

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Recovery and temporary codes at rest, the slow way (issue 14 item 8).
// HashRecoveryCode (hex SHA-256, one salt per user) lets whoever copies a
// bundle or the database try all 2^50 codes in days on one GPU. A code
// hashed with HashCodeKDF has a salt of its own and costs an argon2id
// run per guess. The format is self-describing, so a verifier reads old
// and new hashes alike and parameters can be raised later:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt, base64>$<key, base64>
//
// Parameters are sized for the PAM path: 1 MiB and 1 pass (about 4-5 ms
// a run on the shared 2-core test machine under load). A login may
// compare one answer with all of a user's unused codes (up to 10), which
// made a recovery login up to 10 runs (+29 ms on average, measured:
// BenchmarkBreakGlassConsume). So the salt's first byte is the code's tag,
// the first byte of SHA-256("mamori code tag v1" NUL || normalised code),
// and a verifier skips a hash whose tag differs without running the KDF:
// a login runs it about once (1 + 9/256 expected with 10 codes). The
// price: whoever holds a hash learns 8 bits of its code, so guessing it
// offline takes 2^41.5 argon2id runs instead of 2^49.5 (still ~2^8 times
// the work of the old SHA-256 hashes' 2^49.5 SHA-256 runs, per run the
// cost of filling 1 MiB). The skip also shows in timing at the prompt: a
// guess with the right tag is slower; online guessing is bounded by the
// lock-out, where 8 bits of 49.5 do not matter. Measured before/after
// figures: docs/performance.md ("Recovery codes at rest"). TOTP answers
// never reach it (LooksLikeRecoveryCode).
const (
	codeKDFTime    = 1
	codeKDFMemory  = 1024 // KiB
	codeKDFThreads = 1
	codeKDFKeyLen  = 32
	codeKDFSaltLen = 16

	// Bounds a verifier accepts in a stored hash, so a hostile bundle
	// cannot make the agent spend seconds or gigabytes on one answer.
	maxCodeKDFMemory = 64 * 1024
	maxCodeKDFTime   = 8
	maxCodeKDFLen    = 256
)

var codeB64 = base64.RawStdEncoding

// HashCodeKDF hashes a recovery or temporary code (normalised first)
// with argon2id and a random salt of its own.
func HashCodeKDF(code string) (string, error) {
	salt := make([]byte, codeKDFSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash code: %w", err)
	}
	salt[0] = codeTag(NormalizeCode(code))
	key := argon2.IDKey([]byte(NormalizeCode(code)), salt, codeKDFTime, codeKDFMemory, codeKDFThreads, codeKDFKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, codeKDFMemory, codeKDFTime, codeKDFThreads,
		codeB64.EncodeToString(salt), codeB64.EncodeToString(key)), nil
}

// IsCodeKDF reports whether a stored code hash is in HashCodeKDF's format
// (else it is HashRecoveryCode's hex).
func IsCodeKDF(stored string) bool { return strings.HasPrefix(stored, "$argon2id$") }

// VerifyCode reports whether code matches stored, which is either a
// HashCodeKDF string or a HashRecoveryCode hex digest under legacySalt
// (hashes made before the KDF keep working until the codes are used or
// replaced). Malformed or out-of-bounds hashes never match.
func VerifyCode(stored string, legacySalt []byte, code string) bool {
	if !IsCodeKDF(stored) {
		want := HashRecoveryCode(legacySalt, code)
		return len(stored) == len(want) && subtle.ConstantTimeCompare([]byte(stored), []byte(want)) == 1
	}
	m, t, p, salt, key, ok := parseCodeKDF(stored)
	if !ok || salt[0] != codeTag(NormalizeCode(code)) {
		return false
	}
	got := argon2.IDKey([]byte(NormalizeCode(code)), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

func parseCodeKDF(s string) (m, t uint32, p uint8, salt, key []byte, ok bool) {
	if len(s) > maxCodeKDFLen {
		return 0, 0, 0, nil, nil, false
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return 0, 0, 0, nil, nil, false
	}
	var mm, tt, pp uint64
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &mm, &tt, &pp); err != nil || n != 3 ||
		f[3] != fmt.Sprintf("m=%d,t=%d,p=%d", mm, tt, pp) {
		return 0, 0, 0, nil, nil, false
	}
	if mm < 8 || mm > maxCodeKDFMemory || tt < 1 || tt > maxCodeKDFTime || pp < 1 || pp > 4 {
		return 0, 0, 0, nil, nil, false
	}
	salt, err1 := codeB64.Strict().DecodeString(f[4])
	key, err2 := codeB64.Strict().DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return 0, 0, 0, nil, nil, false
	}
	return uint32(mm), uint32(tt), uint8(pp), salt, key, true
}

// codeTag is the byte HashCodeKDF puts first in a code's salt (see the
// parameters above).
func codeTag(norm string) byte {
	s := sha256.Sum256([]byte("mamori code tag v1\x00" + norm))
	return s[0]
}

// ValidCodeHash reports whether s is a stored code hash a verifier
// reads: HashCodeKDF's format within the bounds, or HashRecoveryCode's
// lower-case hex.
func ValidCodeHash(s string) bool {
	if IsCodeKDF(s) {
		_, _, _, _, _, ok := parseCodeKDF(s)
		return ok
	}
	return legacyHex(s) && strings.ToLower(s) == s
}

// legacyHex reports whether s looks like HashRecoveryCode's output.
func legacyHex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}
