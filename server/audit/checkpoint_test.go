package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCA(t testing.TB) (*x509.Certificate, func([]byte) []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, func(msg []byte) []byte {
		sum := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// chain builds n records with a checkpoint after every k, signed by sign.
func chain(n, k int, sign func([]byte) []byte) []Record {
	var rs []Record
	var prev []byte
	add := func(r Record) {
		r.Seq = int64(len(rs) + 1)
		r.PrevHash = prev
		r.Hash = Hash(prev, r)
		prev = r.Hash
		rs = append(rs, r)
	}
	for i := range n {
		add(Record{At: time.Unix(int64(i), 0), Actor: "op", Action: "token.create", Target: "t", Detail: "d"})
		if (i+1)%k == 0 {
			h := rs[len(rs)-1]
			add(Record{At: time.Unix(int64(i), 0), Actor: CheckpointActor, Action: CheckpointAction,
				Detail: FormatCheckpoint(h.Seq, h.Hash, sign(CheckpointMessage(h.Seq, h.Hash)))})
		}
	}
	return rs
}

func TestCheckpoints(t *testing.T) {
	ca, sign := testCA(t)
	_, forge := testCA(t)
	for _, tc := range []struct {
		name   string
		edit   func([]Record) []Record
		breaks int
	}{
		{"intact", func(rs []Record) []Record { return rs }, 0},
		{"forged signature", func(rs []Record) []Record {
			r := &rs[3]
			seq, head, _, _ := ParseCheckpoint(r.Detail)
			r.Detail = FormatCheckpoint(seq, head, forge(CheckpointMessage(seq, head)))
			return rechain(rs, 3)
		}, 3}, // and every later checkpoint: the rechained hashes differ
		{"rewritten and recomputed", func(rs []Record) []Record {
			rs[1].Detail = "changed"
			return rechain(rs, 1)
		}, 3},
		{"malformed", func(rs []Record) []Record {
			rs[3].Detail = "seq=x"
			return rechain(rs, 3)
		}, 3},
		{"covers a record outside its window", func(rs []Record) []Record {
			h := rs[0]
			rs[7].Detail = FormatCheckpoint(h.Seq, h.Hash, sign(CheckpointMessage(h.Seq, h.Hash)))
			return rechain(rs, 7)
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v Verifier
			v.Signed(CheckCA(ca))
			for _, r := range tc.edit(chain(9, 3, sign)) {
				v.Add(r)
			}
			if got := len(v.Breaks()); got != tc.breaks {
				t.Fatalf("%d breaks, want %d: %v", got, tc.breaks, v.Breaks())
			}
			for _, b := range v.Breaks() {
				if b.Kind != Checkpoint || !strings.Contains(b.String(), "signed checkpoint broken") {
					t.Errorf("break %v", b)
				}
			}
			if tc.breaks == 0 && (v.Checkpoints() != 3 || v.SignedThrough() != 11) {
				t.Errorf("checkpoints %d, signed through %d", v.Checkpoints(), v.SignedThrough())
			}
		})
	}
}

// rechain recomputes every hash from index i, as a forger without the
// key would.
func rechain(rs []Record, i int) []Record {
	var prev []byte
	if i > 0 {
		prev = rs[i-1].Hash
	}
	for j := i; j < len(rs); j++ {
		rs[j].PrevHash = prev
		rs[j].Hash = Hash(prev, rs[j])
		prev = rs[j].Hash
	}
	return rs
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(FormatCheckpoint(7, make([]byte, 32), []byte{1, 2, 3}))
	f.Add("seq=1 head= sig=")
	f.Add("seq=-1 head=00 sig=AA==")
	f.Add(strings.Repeat("seq=1 ", 400))
	f.Fuzz(func(t *testing.T, s string) {
		seq, head, sig, err := ParseCheckpoint(s)
		if err != nil {
			return
		}
		if seq < 1 || len(head) != 32 || len(sig) == 0 {
			t.Fatalf("accepted %q: %d %x %x", s, seq, head, sig)
		}
		if again := FormatCheckpoint(seq, head, sig); again != s {
			t.Fatalf("%q does not round-trip: %q", s, again)
		}
	})
}
