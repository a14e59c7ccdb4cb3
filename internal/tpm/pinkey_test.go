package tpm_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
)

// TestPINKeySimulator and TestPINKeySwtpm run the PIN key and sealing
// suite against the go-tpm-tools simulator and against swtpm.
func TestPINKeySimulator(t *testing.T) {
	pinKeySuite(t, func(t *testing.T) transport.TPM { return tpmtest.Open(t, 1) })
}

func TestPINKeySwtpm(t *testing.T) {
	pinKeySuite(t, func(t *testing.T) transport.TPM { return tpmtest.Swtpm(t) })
}

func pinKeySuite(t *testing.T, open func(*testing.T) transport.TPM) {
	pin := []byte("482917")
	t.Run("right PIN signs, wrong PIN fails, DA lockout", func(t *testing.T) {
		tp := open(t)
		// Small threshold: 3 tries, one try back every 60 s; lockoutAuth
		// failures recover after 60 s.
		tpmtest.SetDictionaryAttack(t, tp, 3, 60, 60)
		blob, err := tpm.CreatePINKey(tp, pin)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := tpm.PINKeyPublic(blob)
		if err != nil {
			t.Fatal(err)
		}
		if pub == nil || bytes.Contains(blob.Public, pin) || bytes.Contains(blob.Private, pin) {
			t.Fatal("PIN visible in the blob, or no public key")
		}
		p, _ := tpm2.Unmarshal[tpm2.TPM2BPublic](blob.Public)
		pp, _ := p.Contents()
		if pp.ObjectAttributes.NoDA {
			t.Fatal("PIN key has noDA set: guesses would not count")
		}
		if err := tpm.VerifyPIN(tp, blob, pin); err != nil {
			t.Fatalf("right PIN: %v", err)
		}
		// Two wrong PINs are refused as wrong, not as lockout...
		for i := range 2 {
			err := tpm.VerifyPIN(tp, blob, []byte("000000"))
			if !errors.Is(err, tpm.ErrWrongPIN) {
				t.Fatalf("wrong PIN %d: %v, want ErrWrongPIN", i+1, err)
			}
			if strings.Contains(err.Error(), "000000") {
				t.Fatal("error carries the PIN")
			}
		}
		// ...the third reaches maxTries; from then on the TPM refuses
		// every DA-protected authorisation, the right PIN included.
		err = tpm.VerifyPIN(tp, blob, []byte("111111"))
		if !errors.Is(err, tpm.ErrWrongPIN) && !errors.Is(err, tpm.ErrLockedOut) {
			t.Fatalf("third wrong PIN: %v", err)
		}
		if err := tpm.VerifyPIN(tp, blob, []byte("222222")); !errors.Is(err, tpm.ErrLockedOut) {
			t.Fatalf("wrong PIN past the threshold: %v, want ErrLockedOut", err)
		}
		if err := tpm.VerifyPIN(tp, blob, pin); !errors.Is(err, tpm.ErrLockedOut) {
			t.Fatalf("right PIN during lockout: %v, want ErrLockedOut", err)
		}
		// Sealed data is noDA: the agent still opens its secrets.
		sealed, err := tpm.Seal(tp, []byte("still works"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tpm.Unseal(tp, sealed); err != nil || string(got) != "still works" {
			t.Fatalf("unseal during DA lockout: %q, %v", got, err)
		}
		// The owner (lockout hierarchy) resets it; the right PIN works again.
		tpmtest.SetDictionaryAttack(t, tp, 3, 60, 60)
		if err := tpm.VerifyPIN(tp, blob, pin); err != nil {
			t.Fatalf("right PIN after lockout reset: %v", err)
		}
	})
	t.Run("a right PIN does not reset the DA counter", func(t *testing.T) {
		tp := open(t)
		tpmtest.SetDictionaryAttack(t, tp, 3, 600, 600)
		blob, err := tpm.CreatePINKey(tp, pin)
		if err != nil {
			t.Fatal(err)
		}
		for i, try := range []string{"000000", "000001", string(pin), "000002"} {
			err := tpm.VerifyPIN(tp, blob, []byte(try))
			if (try == string(pin)) != (err == nil) {
				t.Fatalf("try %d: %v", i+1, err)
			}
		}
		// Three failures in all, a success in between: locked out.
		if err := tpm.VerifyPIN(tp, blob, pin); !errors.Is(err, tpm.ErrLockedOut) {
			t.Fatalf("after 3 failures with a success between: %v, want ErrLockedOut", err)
		}
	})
	t.Run("PIN key of another user does not open with this PIN", func(t *testing.T) {
		tp := open(t)
		a, err := tpm.CreatePINKey(tp, []byte("111111"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := tpm.CreatePINKey(tp, []byte("222222"))
		if err != nil {
			t.Fatal(err)
		}
		if err := tpm.VerifyPIN(tp, a, []byte("222222")); !errors.Is(err, tpm.ErrWrongPIN) {
			t.Fatalf("b's PIN on a's key: %v", err)
		}
		// a's private part with b's public part: the TPM refuses to load.
		if err := tpm.VerifyPIN(tp, tpm.Blob{Public: b.Public, Private: a.Private}, []byte("111111")); err == nil || errors.Is(err, tpm.ErrWrongPIN) {
			t.Fatalf("mixed blob: %v", err)
		}
		// The device key's template (noDA) is not accepted as a PIN key.
		k, err := tpm.CreateKey(tp)
		if err != nil {
			t.Fatal(err)
		}
		k.Close()
		if _, err := tpm.PINKeyPublic(k.Blob()); err == nil {
			t.Fatal("a noDA device key passed as a PIN key")
		}
	})
	t.Run("seal and unseal", func(t *testing.T) {
		tp := open(t)
		secret := bytes.Repeat([]byte{0xA5}, 32)
		blob, err := tpm.Seal(tp, secret)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(blob.Private, secret[:8]) {
			t.Fatal("secret visible in the sealed blob")
		}
		got, err := tpm.Unseal(tp, blob)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("round trip: %x, %v", got, err)
		}
		if _, err := tpm.Seal(tp, make([]byte, tpm.MaxSealed+1)); err == nil {
			t.Fatal("sealed more than MaxSealed bytes")
		}
		// Tampering: every byte of the private part matters (integrity
		// HMAC), and the public part is bound to it (its name).
		for _, i := range []int{2, len(blob.Private) / 2, len(blob.Private) - 1} {
			bad := tpm.Blob{Public: blob.Public, Private: bytes.Clone(blob.Private)}
			bad.Private[i] ^= 0x01
			if got, err := tpm.Unseal(tp, bad); err == nil {
				t.Fatalf("tampered private byte %d unsealed: %x", i, got)
			}
		}
		badPub := tpm.Blob{Public: bytes.Clone(blob.Public), Private: blob.Private}
		badPub.Public[len(badPub.Public)-1] ^= 0x01
		if _, err := tpm.Unseal(tp, badPub); err == nil {
			t.Fatal("tampered public part unsealed")
		}
	})
}

// TestSealedBlobOtherTPM: a sealed blob does not unseal in another TPM
// (the simulator with another seed), nor does a PIN key load there.
func TestSealedBlobOtherTPM(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	blob, err := tpm.Seal(tp, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	pinBlob, err := tpm.CreatePINKey(tp, []byte("123456"))
	if err != nil {
		t.Fatal(err)
	}
	tp.(transport.TPMCloser).Close()
	other := tpmtest.Open(t, 2)
	if _, err := tpm.Unseal(other, blob); err == nil {
		t.Fatal("sealed blob opened in another TPM")
	}
	if err := tpm.VerifyPIN(other, pinBlob, []byte("123456")); err == nil || errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("PIN key on another TPM: %v", err)
	}
}
