package auditsig

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/pki"
)

// TestMessage pins the signed bytes: checkpoints already in audit logs
// were signed over exactly this layout, and agents check it.
func TestMessage(t *testing.T) {
	head := bytes.Repeat([]byte{0xab}, 32)
	got := hex.EncodeToString(Message(258, head))
	want := hex.EncodeToString([]byte("mamori audit checkpoint v1\x00")) + "0000000000000102" + hex.EncodeToString(head)
	if got != want {
		t.Fatalf("message\n got %s\nwant %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.Repeat([]byte{1}, 32)
	sig, err := ca.SignMessage(Message(7, head))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ca.Cert, 7, head, sig); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other CA":       Verify(other.Cert, 7, head, sig),
		"other seq":      Verify(ca.Cert, 8, head, sig),
		"other head":     Verify(ca.Cert, 7, bytes.Repeat([]byte{2}, 32), sig),
		"no CA":          Verify(nil, 7, head, sig),
		"seq 0":          Verify(ca.Cert, 0, head, sig),
		"short head":     Verify(ca.Cert, 7, head[:31], sig),
		"long head":      Verify(ca.Cert, 7, append(bytes.Clone(head), 0), sig),
		"no signature":   Verify(ca.Cert, 7, head, nil),
		"huge signature": Verify(ca.Cert, 7, head, make([]byte, MaxSig+1)),
		"garbage sig":    Verify(ca.Cert, 7, head, []byte("not asn.1")),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// FuzzVerify: any bytes are refused with an error, never a panic or a
// success without the key.
func FuzzVerify(f *testing.F) {
	ca, _, err := pki.LoadOrCreateCA(f.TempDir(), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(int64(1), bytes.Repeat([]byte{1}, 32), []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add(int64(-1), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, seq int64, head, sig []byte) {
		if Verify(ca.Cert, seq, head, sig) == nil {
			t.Fatalf("seq %d head %x sig %x verified without the CA key", seq, head, sig)
		}
	})
}
