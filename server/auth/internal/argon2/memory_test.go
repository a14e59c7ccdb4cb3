package argon2

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"testing"

	xargon2 "golang.org/x/crypto/argon2"
)

// The copy with a reused work area derives what x/crypto does, for
// varied inputs and sizes, one Memory reused across them all.
func TestMemoryMatchesXCrypto(t *testing.T) {
	var m Memory
	for i, p := range []struct {
		t, mem uint32
		th     uint8
		n      uint32
	}{{2, 19 * 1024, 1, 32}, {1, 64, 1, 16}, {3, 256, 2, 64}, {2, 19 * 1024, 1, 32}, {1, 8, 1, 4}} {
		pw, salt := make([]byte, i*7), make([]byte, 16)
		rand.Read(pw)
		rand.Read(salt)
		want := xargon2.IDKey(pw, salt, p.t, p.mem, p.th, p.n)
		if got := m.IDKey(pw, salt, p.t, p.mem, p.th, p.n); !bytes.Equal(got, want) {
			t.Errorf("params %+v: got %x, want %x", p, got, want)
		}
	}
	for _, b := range m.b {
		if b != (block{}) {
			t.Fatal("the work area is not cleared after use")
		}
	}
}

// RFC 9106 section 5.3's argon2id vector (secret and data are not in
// mamori's API; x/crypto's internal deriveKey takes them).
func TestRFC9106(t *testing.T) {
	pw, salt, secret, ad := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 8), bytes.Repeat([]byte{4}, 12)
	var buf []block
	got := deriveKeyIn(&buf, argon2id, pw, salt, secret, ad, 3, 32, 4, 32)
	if want := "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"; hex.EncodeToString(got) != want {
		t.Errorf("got %x, want %s", got, want)
	}
}
