package credprov

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/blake2b"

	"github.com/mamori-dev/mamori/internal/mfabundle"
)

// The DLL's own BLAKE2b and argon2id (src/argon2id.c), under the
// sanitizers: the RFCs' vectors, then against golang.org/x/crypto on
// random inputs, then the stored string's parser on hostile input.

// argon2Raw asks the harness for argon2id (kind 11); "-1" when refused.
func argon2Raw(t testing.TB, h *harness, tc, m, p, outlen uint32, pwd, salt, secret, ad []byte) string {
	t.Helper()
	var b []byte
	for _, v := range []uint32{tc, m, p, outlen, uint32(len(pwd)), uint32(len(salt)), uint32(len(secret)), uint32(len(ad))} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	b = append(append(append(append(b, pwd...), salt...), secret...), ad...)
	return h.runText(t, 11, b)
}

// blake2bRaw asks the harness for BLAKE2b (kind 12).
func blake2bRaw(t testing.TB, h *harness, outlen int, key, msg []byte) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, uint32(outlen))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(key)))
	return h.runText(t, 12, append(append(b, key...), msg...))
}

func TestKDFVectors(t *testing.T) {
	h := sanitized(t)
	// RFC 9106 section 5.3 (argon2id): password 32 x 01, salt 16 x 02,
	// secret 8 x 03, associated data 12 x 04, t=3, m=32, p=4.
	got := argon2Raw(t, h, 3, 32, 4, 32, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16),
		bytes.Repeat([]byte{3}, 8), bytes.Repeat([]byte{4}, 12))
	if want := "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"; got != want {
		t.Errorf("RFC 9106 argon2id vector: got %s, want %s", got, want)
	}
	// RFC 7693 Appendix A: BLAKE2b-512("abc").
	if got, want := blake2bRaw(t, h, 64, nil, []byte("abc")),
		"ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"+
			"7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"; got != want {
		t.Errorf("RFC 7693 BLAKE2b-512(abc): got %s, want %s", got, want)
	}
	// RFC 7693 Appendix E: the self-test's grand hash over 48 unkeyed
	// and keyed digests of lengths 20..64 and messages of 0..1024 bytes.
	if got := h.run(t, 13, nil); got != 1 {
		t.Error("RFC 7693 Appendix E self-test failed")
	}
}

// TestKDFAgainstXCrypto compares the C argon2id with x/crypto's IDKey on
// random passwords, salts and parameters within the bounds the Go side
// accepts (and m >= 8p, below which RFC 9106 has no answer and the C
// refuses), and BLAKE2b with x/crypto's, keyed and unkeyed.
func TestKDFAgainstXCrypto(t *testing.T) {
	h := sanitized(t)
	r := rand.New(rand.NewSource(14))
	n := 150
	if testing.Short() {
		n = 30
	}
	for i := 0; i < n; i++ {
		p := uint32(1 + r.Intn(4))
		m := 8*p + uint32(r.Intn(600))
		tc := uint32(1 + r.Intn(3))
		switch i % 10 {
		case 0: // as issued: 1 MiB, 1 pass, 32-byte key
			m, tc, p = 1024, 1, 1
		case 1: // the upper bounds, at a small memory
			tc, p = 8, 4
		}
		if i == 2 {
			m, tc = 4096, 2
		}
		pwd := make([]byte, r.Intn(40))
		salt := make([]byte, 8+r.Intn(40))
		r.Read(pwd)
		r.Read(salt)
		keyLen := uint32(16 + r.Intn(49))
		if i%7 == 3 {
			keyLen = uint32(65 + r.Intn(200)) // H' past one BLAKE2b output
		}
		want := hex.EncodeToString(argon2.IDKey(pwd, salt, tc, m, uint8(p), keyLen))
		if got := argon2Raw(t, h, tc, m, p, keyLen, pwd, salt, nil, nil); got != want {
			t.Fatalf("t=%d m=%d p=%d len=%d pwd=%x salt=%x: C %s, x/crypto %s", tc, m, p, keyLen, pwd, salt, got, want)
		}
	}
	for i := 0; i < 300; i++ {
		outlen := 1 + r.Intn(64)
		key := make([]byte, r.Intn(65))
		if i%3 == 0 {
			key = nil
		}
		msg := make([]byte, r.Intn(600))
		if i < 4 {
			msg = make([]byte, []int{0, 127, 128, 129}[i])
		}
		r.Read(key)
		r.Read(msg)
		hh, err := blake2b.New(outlen, key)
		if err != nil {
			t.Fatal(err)
		}
		hh.Write(msg)
		if got, want := blake2bRaw(t, h, outlen, key, msg), hex.EncodeToString(hh.Sum(nil)); got != want {
			t.Fatalf("BLAKE2b outlen=%d key=%x msg=%x: C %s, x/crypto %s", outlen, key, msg, got, want)
		}
	}
}

// TestKDFRefusesOutOfBounds: parameters a hostile file could ask for are
// refused before any memory is taken.
func TestKDFRefusesOutOfBounds(t *testing.T) {
	h := sanitized(t)
	salt := []byte("0123456789abcdef")
	for _, c := range []struct {
		name         string
		tc, m, p, kl uint32
		salt         []byte
	}{
		{"m over 64 MiB", 1, 64*1024 + 1, 1, 32, salt},
		{"m 4 GiB", 1, 1<<32 - 1, 1, 32, salt},
		{"t over 8", 9, 1024, 1, 32, salt},
		{"t 2^32-1", 1<<32 - 1, 1024, 1, 32, salt},
		{"t 0", 0, 1024, 1, 32, salt},
		{"p 0", 1, 1024, 0, 32, salt},
		{"p 5", 1, 1024, 5, 32, salt},
		{"m below 8p", 1, 31, 4, 32, salt},
		{"salt of 7 bytes", 1, 1024, 1, 32, salt[:7]},
		{"key of 3 bytes", 1, 1024, 1, 3, salt},
		{"key of 1025 bytes", 1, 1024, 1, 1025, salt},
	} {
		if got := argon2Raw(t, h, c.tc, c.m, c.p, c.kl, []byte("ABCDEFGHJK"), c.salt, nil, nil); got != "-1" {
			t.Errorf("%s: got %s, want refused", c.name, got)
		}
	}
	if got := blake2bRaw(t, h, 65, nil, nil); got != "-1" {
		t.Errorf("BLAKE2b of 65 bytes: got %s", got)
	}
	if got := blake2bRaw(t, h, 32, make([]byte, 65), nil); got != "-1" {
		t.Errorf("BLAKE2b with a 65-byte key: got %s", got)
	}
}

// kdfString checks a stored string with the harness (kind 10): -1
// refused by the parser, else 1 or 0 for code.
func kdfString(t testing.TB, h *harness, s, code string) int64 {
	t.Helper()
	return h.run(t, 10, []byte(s+"\x00"+code))
}

// TestKDFStringHostile: the C parser reads what internal/mfabundle
// writes and refuses, like parseCodeKDF, everything else.
func TestKDFStringHostile(t *testing.T) {
	h := sanitized(t)
	good, err := mfabundle.HashCodeKDF("ABCDE-FGHJK")
	if err != nil {
		t.Fatal(err)
	}
	if got := kdfString(t, h, good, "ABCDEFGHJK"); got != 1 {
		t.Fatalf("HashCodeKDF's string does not verify: %d", got)
	}
	if got := kdfString(t, h, good, "ABCDEFGHJM"); got != 0 {
		t.Fatalf("another code verifies: %d", got)
	}
	f := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, key
	salt, key := f[4], f[5]
	b64 := base64.RawStdEncoding.EncodeToString
	mk := func(params, s, k string) string { return "$argon2id$v=19$" + params + "$" + s + "$" + k }
	bad := map[string]string{
		"empty":                 "",
		"prefix only":           "$argon2id$",
		"argon2i":               strings.Replace(good, "argon2id", "argon2i", 1),
		"version 16":            strings.Replace(good, "v=19", "v=16", 1),
		"version 019":           strings.Replace(good, "v=19", "v=019", 1),
		"no key":                mk("m=1024,t=1,p=1", salt, ""),
		"no salt":               mk("m=1024,t=1,p=1", "", key),
		"missing field":         "$argon2id$v=19$m=1024,t=1,p=1$" + salt,
		"extra field":           good + "$" + key,
		"extra $ in key":        mk("m=1024,t=1,p=1", salt, key[:10]+"$"+key[10:]),
		"m huge":                mk("m=4294967295,t=1,p=1", salt, key),
		"m 20 digits":           mk("m=99999999999999999999,t=1,p=1", salt, key),
		"m over 64 MiB":         mk("m=65537,t=1,p=1", salt, key),
		"m 0":                   mk("m=0,t=1,p=1", salt, key),
		"m 7":                   mk("m=7,t=1,p=1", salt, key),
		"t 9":                   mk("m=1024,t=9,p=1", salt, key),
		"t 0":                   mk("m=1024,t=0,p=1", salt, key),
		"p 5":                   mk("m=1024,t=1,p=5", salt, key),
		"p 255":                 mk("m=1024,t=1,p=255", salt, key),
		"m below 8p":            mk("m=31,t=1,p=4", salt, key),
		"leading zero":          mk("m=01024,t=1,p=1", salt, key),
		"plus sign":             mk("m=+1024,t=1,p=1", salt, key),
		"minus sign":            mk("m=-1024,t=1,p=1", salt, key),
		"space":                 mk("m=1024, t=1,p=1", salt, key),
		"order":                 mk("t=1,m=1024,p=1", salt, key),
		"trailing comma":        mk("m=1024,t=1,p=1,", salt, key),
		"empty number":          mk("m=,t=1,p=1", salt, key),
		"padding":               mk("m=1024,t=1,p=1", b64([]byte("0123456789a"))+"=", key),
		"truncated base64":      mk("m=1024,t=1,p=1", salt, key[:len(key)-len(key)%4]+"A"),
		"stray bits":            mk("m=1024,t=1,p=1", salt[:len(salt)-1]+"B", key),
		"URL alphabet":          mk("m=1024,t=1,p=1", strings.Repeat("_-", 11), key),
		"non-ASCII":             mk("m=1024,t=1,p=1", "あいう"+salt, key),
		"NUL in salt":           mk("m=1024,t=1,p=1", salt[:4]+"\x00"+salt[5:], key),
		"salt of 7 bytes":       mk("m=1024,t=1,p=1", b64(make([]byte, 7)), key),
		"key of 15 bytes":       mk("m=1024,t=1,p=1", salt, b64(make([]byte, 15))),
		"key of 65 bytes":       mk("m=1024,t=1,p=1", salt, b64(make([]byte, 65))),
		"257 bytes":             mk("m=1024,t=1,p=1", b64(make([]byte, 165)), key),
		"4,000 bytes":           mk("m=1024,t=1,p=1", strings.Repeat("A", 4000), key),
		"lower-case identifier": strings.Replace(good, "argon2id", "ARGON2ID", 1),
	}
	for name, s := range bad {
		if got := kdfString(t, h, s, "ABCDEFGHJK"); got != -1 {
			t.Errorf("%s (%q): got %d, want refused", name, s, got)
		}
		if mfabundle.ValidCodeHash(s) && name != "m below 8p" {
			t.Errorf("%s: the Go side accepts what the C refuses", name)
		}
	}
	// At the bounds: accepted by both (a wrong key: the KDF runs, no match).
	for _, s := range []string{
		mk("m=8,t=1,p=1", b64(make([]byte, 8)), b64(make([]byte, 16))),
		mk("m=32,t=8,p=4", b64(make([]byte, 8)), b64(make([]byte, 64))),
		mk("m=1024,t=1,p=1", b64(make([]byte, 120)), b64(make([]byte, 32))),
	} {
		if !mfabundle.ValidCodeHash(s) {
			t.Fatalf("Go refuses %s", s)
		}
		if got := kdfString(t, h, s, "ABCDEFGHJK"); got != 0 {
			t.Errorf("%s: got %d, want 0 (parsed, no match)", s, got)
		}
	}
}

// TestSanitizedBreakGlassKDF: cp_bg_take on argon2id lines beside legacy
// ones: the right code is found and its line removed, the hash handed back
// whole (the agent names the code by mfabundle.CodeID of it); a line
// whose tag differs costs no KDF run; the KDF work per check is bounded.
func TestSanitizedBreakGlassKDF(t *testing.T) {
	h := sanitized(t)
	mine, err := mfabundle.HashCodeKDF("ABCDEFGHJK")
	if err != nil {
		t.Fatal(err)
	}
	other, err := mfabundle.HashCodeKDF("ABCDEFGHJM")
	if err != nil {
		t.Fatal(err)
	}
	file := func(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }
	for _, c := range []struct {
		name string
		in   []byte
		want int64
	}{
		{"argon2id line", file("# head", "suzuki 0102 "+mine, "tanaka 0102 "+other, "tanaka 0102 "+mine), 1},
		{"another user's line", file("suzuki 0102 " + mine), 0},
		{"another code only", file("tanaka 0102 " + other), 0},
		{"legacy line beside argon2id ones", file("tanaka 0102 "+other, "tanaka 0102 "+bgHash), 1},
		{"hash over 200 bytes", file("tanaka 0102 " + mine + strings.Repeat("A", 200-len(mine)+4)), 0},
		{"CRLF", []byte("tanaka 0102 " + mine + "\r\n"), 1},
		{"argon2id string with spaces", file("tanaka 0102 " + strings.Replace(mine, ",", " ", 1)), 0},
	} {
		if got := h.run(t, 8, c.in); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
	// The used line carries the argon2id string whole.
	if got := h.run(t, 9, []byte(mine+"\x00tanaka\x00windows-logon\x00")); got != int64(len(mine)+1+6+1+13+1+1+1+10+1) {
		t.Errorf("used line with an argon2id hash: %d", got)
	}
	if got := h.run(t, 9, []byte(mine[:len(mine)-2]+"\x00tanaka\x00s\x00")); got != 0 {
		t.Errorf("used line with a damaged argon2id hash: %d", got)
	}
	// The budget: a line at the largest parameters with this code's tag
	// (and a wrong key) spends the whole budget; the right line after it
	// is then not tried.
	f := strings.Split(mine, "$")
	heavy := "$argon2id$v=19$m=65536,t=8,p=1$" + f[4] + "$" + base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	if testing.Short() {
		t.Skip("the budget case runs one 64 MiB, 8-pass KDF under the sanitizers")
	}
	if got := h.run(t, 8, file("tanaka 0102 "+heavy, "tanaka 0102 "+mine)); got != 0 {
		t.Errorf("a line past the KDF budget was tried: %d", got)
	}
}

// FuzzKDFString feeds any string to the C parser (and, when it parses,
// the KDF) under the sanitizers. What the C accepts, the Go side must
// accept too.
func FuzzKDFString(f *testing.F) {
	good, err := mfabundle.HashCodeKDF("ABCDEFGHJK")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=65537,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=1024,t=1,p=1$A$A", "$argon2id$"} {
		f.Add(s, "ABCDEFGHJK")
	}
	sanitized(f) // built in the coordinator, before the workers start
	f.Fuzz(func(t *testing.T, s, code string) {
		if len(s) > 1024 || len(code) > 64 || strings.ContainsRune(s, 0) {
			return
		}
		got := sanitized(t).run(t, 10, []byte(s+"\x00"+code))
		if got != -1 && !mfabundle.ValidCodeHash(s) {
			t.Fatalf("C accepts %q, Go refuses it", s)
		}
	})
}
