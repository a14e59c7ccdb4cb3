package auth

import (
	"bytes"
	"strings"
	"testing"
)

func TestSeedKey(t *testing.T) {
	k, err := NewSeedKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSeedKey(bytes.Repeat([]byte{8}, 32))
	seed := Secret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	s1, s2 := k.Seal("op-1", seed), k.Seal("op-1", seed)
	if !IsSealed(s1) || s1 == s2 || strings.Contains(s1, seed.Reveal()) {
		t.Fatalf("sealed %q %q", s1, s2)
	}
	if got, plain, err := k.Open("op-1", s1); err != nil || plain || got != seed {
		t.Fatalf("open: %v %v %v", got, plain, err)
	}
	// Moved to another operator, another key, damaged, hostile.
	for name, tc := range map[string]struct {
		k       *SeedKey
		op, val string
	}{
		"other operator": {k, "op-2", s1},
		"other key":      {other, "op-1", s1},
		"flipped":        {k, "op-1", s1[:len(s1)-2] + "AA"},
		"short":          {k, "op-1", sealedPrefix + "AAAA"},
		"not base64":     {k, "op-1", sealedPrefix + "!!!"},
		"empty":          {k, "op-1", sealedPrefix},
		"huge":           {k, "op-1", sealedPrefix + strings.Repeat("A", 1<<16)},
	} {
		if _, _, err := tc.k.Open(tc.op, tc.val); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// A seed stored before sealing is read as it is, and said so.
	if got, plain, err := k.Open("op-1", seed.Reveal()); err != nil || !plain || got != seed {
		t.Errorf("plain: %v %v %v", got, plain, err)
	}
	if _, err := NewSeedKey(make([]byte, 16)); err == nil {
		t.Error("a 16-byte key was taken")
	}
}

func FuzzSeedOpen(f *testing.F) {
	k, _ := NewSeedKey(bytes.Repeat([]byte{7}, 32))
	f.Add(k.Seal("op", "SEED"))
	f.Add(sealedPrefix + "AAAA")
	f.Add("plain")
	f.Fuzz(func(t *testing.T, s string) {
		got, plain, err := k.Open("op", s)
		if err == nil && !plain && !IsSealed(s) {
			t.Fatalf("%q opened as sealed", s)
		}
		if plain && got.Reveal() != s {
			t.Fatalf("plain %q came back as %q", s, got.Reveal())
		}
	})
}
