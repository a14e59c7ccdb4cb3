// Package auditsig is what a signed audit checkpoint is, shared by the
// server that signs and checks the log (server/audit, server/admin) and
// the agent that keeps a copy of the newest checkpoint as a witness
// (agent/daemon): the message the server's CA key signs and the check of
// that signature. It imports neither side.
package auditsig

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// domain separates these signatures from everything else the CA key
// signs (X.509 certificates are DER and start with 0x30).
const domain = "mamori audit checkpoint v1\x00"

// Bounds of a checkpoint on the wire.
const (
	HeadLen = 32  // SHA-256
	MaxSig  = 512 // an ECDSA P-256 ASN.1 signature is at most 72 bytes; RSA-4096 512
)

// Message is what a checkpoint signs: the domain, seq (8 bytes,
// big-endian) and the covered record's hash.
func Message(seq int64, head []byte) []byte {
	b := make([]byte, 0, len(domain)+8+len(head))
	b = append(b, domain...)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	return append(b, head...)
}

// ErrMalformed: a checkpoint's fields are out of bounds.
var ErrMalformed = errors.New("malformed audit checkpoint")

// WellFormed checks a checkpoint's fields without its signature.
func WellFormed(seq int64, head, sig []byte) error {
	if seq < 1 || len(head) != HeadLen || len(sig) == 0 || len(sig) > MaxSig {
		return fmt.Errorf("%w: seq %d, head %d bytes (want %d), signature %d bytes (1 to %d)", ErrMalformed, seq, len(head), HeadLen, len(sig), MaxSig)
	}
	return nil
}

// CheckCA returns the check of a checkpoint message's signature by the CA
// certificate's key.
func CheckCA(ca *x509.Certificate) func(msg, sig []byte) error {
	return func(msg, sig []byte) error {
		alg := x509.ECDSAWithSHA256
		switch ca.PublicKeyAlgorithm {
		case x509.Ed25519:
			alg = x509.PureEd25519
		case x509.RSA:
			alg = x509.SHA256WithRSA
		}
		return ca.CheckSignature(alg, msg, sig)
	}
}

// Verify checks a whole checkpoint: well formed and signed by ca's key.
func Verify(ca *x509.Certificate, seq int64, head, sig []byte) error {
	if err := WellFormed(seq, head, sig); err != nil {
		return err
	}
	if ca == nil {
		return errors.New("audit checkpoint: no CA certificate to check it with")
	}
	if err := CheckCA(ca)(Message(seq, head), sig); err != nil {
		return fmt.Errorf("audit checkpoint of seq %d: not signed by the server's CA key: %w", seq, err)
	}
	return nil
}
