package totp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// RFC 4226 Appendix D.
func TestHOTPRFC4226(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for i, w := range want {
		got, err := HOTP([]byte("12345678901234567890"), uint64(i), SHA1, 6)
		if err != nil || got != w {
			t.Errorf("HOTP(count %d) = %q, %v; want %q", i, got, err, w)
		}
	}
}

// RFC 6238 Appendix B: all 18 vectors, 8 digits, 30 s.
func TestTOTPRFC6238(t *testing.T) {
	seeds := map[Algorithm][]byte{
		SHA1:   []byte("12345678901234567890"),
		SHA256: []byte("12345678901234567890123456789012"),
		SHA512: []byte("1234567890123456789012345678901234567890123456789012345678901234"),
	}
	tests := []struct {
		unix int64
		alg  Algorithm
		want string
	}{
		{59, SHA1, "94287082"}, {59, SHA256, "46119246"}, {59, SHA512, "90693936"},
		{1111111109, SHA1, "07081804"}, {1111111109, SHA256, "68084774"}, {1111111109, SHA512, "25091201"},
		{1111111111, SHA1, "14050471"}, {1111111111, SHA256, "67062674"}, {1111111111, SHA512, "99943326"},
		{1234567890, SHA1, "89005924"}, {1234567890, SHA256, "91819424"}, {1234567890, SHA512, "93441116"},
		{2000000000, SHA1, "69279037"}, {2000000000, SHA256, "90698825"}, {2000000000, SHA512, "38618901"},
		{20000000000, SHA1, "65353130"}, {20000000000, SHA256, "77737706"}, {20000000000, SHA512, "47863826"},
	}
	for _, tc := range tests {
		t.Run(strconv.FormatInt(tc.unix, 10)+"/"+string(tc.alg), func(t *testing.T) {
			p := Params{Algorithm: tc.alg, Digits: 8, Period: 30 * time.Second, Skew: 0}
			now := time.Unix(tc.unix, 0)
			got, err := p.Code(seeds[tc.alg], now)
			if err != nil || got != tc.want {
				t.Fatalf("Code = %q, %v; want %q", got, err, tc.want)
			}
			if _, err := p.Verify(seeds[tc.alg], tc.want, now, 0); err != nil {
				t.Fatalf("Verify(right code) = %v", err)
			}
		})
	}
}

// TestAgainstOathtool compares 3 × 300 consecutive steps with Debian's
// oathtool, an independent implementation.
func TestAgainstOathtool(t *testing.T) {
	oath := testenv.LookPath(t, "oathtool", "oathtool")
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, size := range []int{10, 20, 32} {
		secret := make(Secret, size)
		rand.Read(secret)
		out, err := exec.Command(oath, "--totp", "-b", secret.Base32(), "-N", start.Format("2006-01-02 15:04:05 UTC"), "-w", "299").Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		lines := strings.Fields(string(out))
		if len(lines) != 300 {
			t.Fatalf("oathtool printed %d codes; want 300", len(lines))
		}
		p := Default()
		for i, want := range lines {
			got, _ := p.Code(secret, start.Add(time.Duration(i)*p.Period))
			if got != want {
				t.Fatalf("secret of %d bytes, step +%d: ours %s, oathtool %s", size, i, got, want)
			}
		}
	}
}

func TestVerifyWindowAndReplay(t *testing.T) {
	p := Default()
	secret, _ := NewSecret()
	now := time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)
	code := func(d time.Duration) string { c, _ := p.Code(secret, now.Add(d)); return c }

	for _, tc := range []struct {
		name string
		at   time.Duration
		ok   bool
	}{{"previous step", -30 * time.Second, true}, {"current", 0, true}, {"next step", 30 * time.Second, true},
		{"two steps back", -60 * time.Second, false}, {"two steps ahead", 60 * time.Second, false}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Verify(secret, code(tc.at), now, 0)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify = %v; want ok=%v", err, tc.ok)
			}
		})
	}
	step, err := p.Verify(secret, code(0), now, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Replay: the same code, and the previous step's, are refused once the
	// current step was accepted, for the whole window.
	for _, d := range []time.Duration{0, 20 * time.Second} {
		if _, err := p.Verify(secret, code(0), now.Add(d), step); !errors.Is(err, ErrReplayed) {
			t.Fatalf("replayed code at +%v: %v; want ErrReplayed", d, err)
		}
	}
	if _, err := p.Verify(secret, code(-30*time.Second), now, step); !errors.Is(err, ErrReplayed) {
		t.Fatalf("older code after a newer one: %v; want ErrReplayed", err)
	}
	// A wrong code stays ErrInvalid whatever the last step.
	if _, err := p.Verify(secret, "000000", now, step); !errors.Is(err, ErrInvalid) && code(0) != "000000" {
		t.Fatalf("wrong code: %v; want ErrInvalid", err)
	}
	if _, err := p.Verify(secret, code(30*time.Second), now, step); err != nil {
		t.Fatalf("next step's code: %v", err)
	}
	for _, bad := range []string{"", "12345", "1234567", "12a456", " 23456"} {
		if _, err := p.Verify(secret, bad, now, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Verify(%q) = %v; want ErrInvalid", bad, err)
		}
	}
}

func TestSecretRedactsAndURI(t *testing.T) {
	s := Secret(bytes.Repeat([]byte{0xAB}, 20))
	if got := strings.Join([]string{s.String(), s.GoString()}, ","); strings.Contains(got, "AB") || strings.Contains(got, "ab") {
		t.Fatalf("secret printed: %s", got)
	}
	back, err := ParseBase32(strings.ToLower(s.Base32()[:8]) + " " + s.Base32()[8:] + "====")
	if err != nil || !bytes.Equal(back, s) {
		t.Fatalf("ParseBase32 round trip: %x %v", back, err)
	}
	uri := Default().URI("mamori", "tanaka", s)
	if !strings.HasPrefix(uri, "otpauth://totp/mamori:tanaka?") || !strings.Contains(uri, "secret="+s.Base32()) {
		t.Fatalf("URI = %s", uri)
	}
}
