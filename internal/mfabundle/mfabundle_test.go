package mfabundle

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestSealOpen(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	b := &mamoriv1.MFABundle{Version: "g1", DeviceId: "dev-1", Users: []*mamoriv1.MFAUserSecret{{User: "tanaka", TotpSecret: []byte("s")}}}
	sealed, err := Seal(PublicKeyBytes(k), "dev-1", b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(k, "dev-1", sealed)
	if err != nil || !proto.Equal(got, b) {
		t.Fatalf("Open = %v, %v", got, err)
	}
	if _, err := Open(k, "dev-2", sealed); err == nil {
		t.Fatal("a bundle opened under another device ID")
	}
	if _, err := Open(other, "dev-1", sealed); err == nil {
		t.Fatal("a bundle opened with another key")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := Open(k, "dev-1", sealed); err == nil {
		t.Fatal("a tampered bundle opened")
	}
	kb, _ := PrivateKeyBytes(k)
	k2, err := PrivateKey(kb)
	if err != nil || string(PublicKeyBytes(k2)) != string(PublicKeyBytes(k)) {
		t.Fatalf("key round trip: %v", err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, err := NewRecoveryCodes(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		n := NormalizeCode(c)
		if len(c) != 11 || c[5] != '-' || !LooksLikeRecoveryCode(n) || seen[n] {
			t.Fatalf("bad or repeated code %q", c)
		}
		seen[n] = true
	}
	salt := []byte("salt")
	c := codes[0]
	h := HashRecoveryCode(salt, c)
	for _, variant := range []string{strings.ToLower(c), strings.ReplaceAll(c, "-", ""), " " + c} {
		if HashRecoveryCode(salt, variant) != h {
			t.Errorf("variant %q hashes differently", variant)
		}
	}
	if HashRecoveryCode([]byte("other"), c) == h {
		t.Fatal("salt ignored")
	}
	if LooksLikeRecoveryCode("123456") {
		t.Fatal("a TOTP code looks like a recovery code")
	}
}
