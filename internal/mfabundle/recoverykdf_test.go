package mfabundle

import (
	"strings"
	"testing"
	"time"
)

func TestCodeKDF(t *testing.T) {
	codes, err := NewRecoveryCodes(3)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := HashCodeKDF(codes[0])
	h2, _ := HashCodeKDF(codes[0])
	if h1 == h2 || !IsCodeKDF(h1) {
		t.Fatalf("per-code salt: %q %q", h1, h2)
	}
	lower := strings.ToLower(strings.ReplaceAll(codes[0], "-", " "))
	if !VerifyCode(h1, nil, codes[0]) || !VerifyCode(h1, nil, lower) {
		t.Error("the code does not verify")
	}
	if VerifyCode(h1, nil, codes[1]) {
		t.Error("another code verifies")
	}
	// Hashes from before the KDF keep working.
	salt := []byte("per-user salt")
	legacy := HashRecoveryCode(salt, codes[2])
	if !legacyHex(legacy) || !VerifyCode(legacy, salt, codes[2]) || VerifyCode(legacy, salt, codes[1]) || VerifyCode(legacy, []byte("x"), codes[2]) {
		t.Error("legacy hash")
	}
	// Hostile or damaged hashes never match and cost nothing.
	for _, bad := range []string{
		"", "$argon2id$", "$argon2id$v=19$m=1024,t=2,p=1$$",
		"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43), // 4 GiB
		"$argon2id$v=19$m=1024,t=1000,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=1024,t=2,p=255$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43),
		"$argon2id$v=16$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=01024,t=2,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 400),
		strings.Repeat("$", 10000),
	} {
		t0 := time.Now()
		if VerifyCode(bad, nil, codes[0]) {
			t.Errorf("%.60q verifies", bad)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Errorf("%.60q took %v", bad, d)
		}
	}
}

func FuzzVerifyCode(f *testing.F) {
	h, _ := HashCodeKDF("ABCDE-FGHJK")
	f.Add(h, "ABCDEFGHJK")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$c2FsdHNhbHRzYWx0c2FsdA", "x")
	f.Fuzz(func(t *testing.T, stored, code string) {
		if _, _, _, _, _, ok := parseCodeKDF(stored); ok && len(stored) > maxCodeKDFLen {
			t.Fatal("over-long hash parsed")
		}
		VerifyCode(stored, []byte("s"), code) // must not panic or hang
	})
}

// BenchmarkVerifyCodeKDF is one answer checked against a user's 10
// unused codes, as the agent does on the PAM path.
func BenchmarkVerifyCodeKDF(b *testing.B) {
	codes, _ := NewRecoveryCodes(10)
	var hs []string
	for _, c := range codes {
		h, _ := HashCodeKDF(c)
		hs = append(hs, h)
	}
	for b.Loop() {
		for _, h := range hs {
			VerifyCode(h, nil, "ZZZZZZZZZZ")
		}
	}
}
