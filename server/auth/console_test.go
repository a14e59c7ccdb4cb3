package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/auth"
)

func TestPasswordHash(t *testing.T) {
	h, err := auth.HashPassword("正しい馬の電池のホチキス")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string with our parameters", h)
	}
	if !auth.CheckPassword(h, "正しい馬の電池のホチキス") {
		t.Error("the right password does not match")
	}
	for _, bad := range []auth.Secret{"", "正しい馬の電池のホチキ", "正しい馬の電池のホチキス ", auth.Secret(strings.Repeat("a", 300))} {
		if auth.CheckPassword(h, bad) {
			t.Errorf("%q matches", bad.Reveal())
		}
	}
	h2, _ := auth.HashPassword("正しい馬の電池のホチキス")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt?")
	}
	for _, malformed := range []string{"", "$argon2id$", strings.Replace(h, "argon2id", "argon2i", 1), strings.Replace(h, "t=2", "t=99", 1), h[:len(h)-4] + "!!!!"} {
		if auth.CheckPassword(malformed, "正しい馬の電池のホチキス") {
			t.Errorf("malformed hash %q matches", malformed)
		}
	}
	if _, err := auth.HashPassword("short"); err == nil {
		t.Error("a 5-character password was accepted")
	}
}

func TestTOTP(t *testing.T) {
	secret, url, err := auth.NewTOTPSecret("sato")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "otpauth://totp/") || !strings.Contains(url, "secret="+secret.Reveal()) {
		t.Errorf("otpauth URL %q", url)
	}
	now := time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)
	step := now.Unix() / auth.TOTPPeriod
	for _, d := range []int64{-1, 0, 1} {
		code, err := auth.TOTPCode(secret, time.Unix((step+d)*auth.TOTPPeriod, 0))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := auth.CheckTOTP(secret, code, now)
		if !ok || got != step+d {
			t.Errorf("code of step %+d: step %d, ok %v", d, got, ok)
		}
	}
	old, _ := auth.TOTPCode(secret, now.Add(-2*time.Minute))
	if _, ok := auth.CheckTOTP(secret, old, now); ok {
		t.Error("a code from 2 minutes ago is accepted")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := auth.CheckTOTP(secret, bad, now); ok {
			t.Errorf("code %q accepted", bad)
		}
	}
	// RFC 6238 Appendix B, SHA-1 seed, truncated to 6 digits.
	rfc := auth.Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
	if code, _ := auth.TOTPCode(rfc, time.Unix(59, 0)); code != "287082" {
		t.Errorf("RFC 6238 T=59: %s, want 287082", code)
	}
}

func TestSessionAndCSRF(t *testing.T) {
	a, b := auth.NewSessionID(), auth.NewSessionID()
	if a == b {
		t.Fatal("two session IDs are equal")
	}
	ha, err := auth.HashSessionID(a)
	if err != nil || len(ha) != 32 {
		t.Fatalf("hash: %x, %v", ha, err)
	}
	if _, err := auth.HashSessionID("not-a-session"); err == nil {
		t.Error("malformed session ID accepted")
	}
	if auth.CSRFToken(a) == auth.CSRFToken(b) {
		t.Error("two sessions share a CSRF token")
	}
	if !auth.CheckCSRF(a, auth.CSRFToken(a)) || auth.CheckCSRF(a, auth.CSRFToken(b)) || auth.CheckCSRF(a, "") {
		t.Error("CheckCSRF")
	}
}
