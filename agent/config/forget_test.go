package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStripToken(t *testing.T) {
	const removed = tokenRemoved
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"postinst's file", "# c\nMAMORI_SERVER='s:1'\nMAMORI_TOKEN='mme_x'\nMAMORI_CA_FINGERPRINT='f'\n",
			"# c\nMAMORI_SERVER='s:1'\n" + removed + "MAMORI_CA_FINGERPRINT='f'\n", true},
		{"unquoted, no final newline", "MAMORI_TOKEN=mme_x", removed, true},
		{"export and spaces", "  export MAMORI_TOKEN = mme_x\nA=b\n", removed + "A=b\n", true},
		{"every assignment", "MAMORI_TOKEN=a\nMAMORI_TOKEN=b\n", removed + removed, true},
		{"quoted over two lines", "MAMORI_TOKEN=\"mme_x\nsecond\"\nA=b\n", removed + "A=b\n", true},
		{"backslash continuation", "MAMORI_TOKEN=mme_x\\\nsecond\nA=b\n", removed + "A=b\n", true},
		{"quote never closed", "MAMORI_TOKEN='mme_x\nA=b\n", removed, true},
		{"already empty", "MAMORI_TOKEN=\nA=b\n", "MAMORI_TOKEN=\nA=b\n", false},
		{"empty quotes", "MAMORI_TOKEN=''\n", "MAMORI_TOKEN=''\n", false},
		{"other variable with the prefix", "MAMORI_TOKENS=x\n", "MAMORI_TOKENS=x\n", false},
		{"commented out", "# MAMORI_TOKEN=x\n", "# MAMORI_TOKEN=x\n", false},
		{"crlf", "MAMORI_TOKEN=x\r\nA=b\r\n", removed + "A=b\r\n", true},
		{"empty file", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := StripToken([]byte(tc.in))
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("StripToken(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
			}
			if again, ch := StripToken(got); ch || string(again) != string(got) {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
}

func TestForgetTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mamori-agent")
	os.WriteFile(p, []byte("MAMORI_SERVER=a:1\nMAMORI_TOKEN=mme_secret\n"), 0o600)
	if err := ForgetToken(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if strings.Contains(string(b), "mme_secret") || !strings.HasPrefix(string(b), "MAMORI_SERVER=a:1\n") {
		t.Fatalf("after: %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary file left: %v", ents)
	}
	// Missing: nothing to do. A directory, or an oversized file: an error,
	// nothing written.
	if err := ForgetToken(filepath.Join(dir, "none")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o700)
	if err := ForgetToken(filepath.Join(dir, "d")); err == nil {
		t.Fatal("a directory was accepted")
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, []byte("MAMORI_TOKEN=x\n"+strings.Repeat("#\n", maxEnvFile)), 0o600)
	if err := ForgetToken(big); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Fatalf("oversized: %v", err)
	}
	// A world-readable file does not get wider: the mode is narrowed to 0600 at most.
	wide := filepath.Join(dir, "wide")
	os.WriteFile(wide, []byte("MAMORI_TOKEN=x\n"), 0o644)
	os.Chmod(wide, 0o644)
	ForgetToken(wide)
	if fi, _ := os.Stat(wide); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

// FuzzStripToken: no panic; the result has no MAMORI_TOKEN assignment
// with a value left, and stripping again changes nothing.
func FuzzStripToken(f *testing.F) {
	f.Add([]byte("MAMORI_TOKEN='mme_x'\n"))
	f.Add([]byte("MAMORI_TOKEN=\"a\\\"\nb\"\nA=b\n"))
	f.Add([]byte("export MAMORI_TOKEN=x\\\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _ := StripToken(b)
		if again, ch := StripToken(out); ch || string(again) != string(out) {
			t.Fatalf("not idempotent: %q → %q → %q", b, out, again)
		}
	})
}
