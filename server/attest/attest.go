// Package attest is the server's half of attested enrolment: it checks the
// evidence an agent sends (EK, AK, and a TPM2_Certify of the device key by
// the AK), makes a credential-activation challenge that only the TPM
// holding that EK and AK can answer, and checks the answer. It is pure:
// no TPM, no I/O; the prover is internal/tpm.
//
// Why this proves the key is in the TPM:
//   - MakeCredential encrypts a secret to the EK, bound to the AK's name.
//     TPM2_ActivateCredential releases it only in the TPM that has the EK's
//     private part and has an object of exactly that name (public area,
//     attributes included) loaded: the AK is fixedTPM in that TPM.
//   - The AK is a restricted signing key, so it signs only TPMS_ATTEST
//     structures the TPM made itself. Its TPM2_Certify names the device key
//     (name = hash of its public area, attributes included), so the device
//     key is loaded in the same TPM and is fixedTPM|fixedParent|
//     sensitiveDataOrigin: made there, never leaving it.
//   - The certified public key is the CSR's, so the certificate the server
//     signs is for the TPM-resident key.
//
// The challenge is stateless on the server: its secret and what it is
// bound to travel sealed (AES-GCM, a key of this process) in the opaque
// state the agent sends back. The agent answers over the same connection,
// so several servers behind a TCP load balancer work; a server restart
// between the two steps costs the agent one retry.
package attest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// ErrRefused wraps every reason evidence or an answer is not accepted.
var ErrRefused = errors.New("TPM attestation refused")

// Config is the verifier's settings.
type Config struct {
	// RequireEKCert refuses a TPM without an EK certificate that chains to
	// EKRoots (via EKIntermediates). Off for simulators and swtpm.
	RequireEKCert   bool
	EKRoots         *x509.CertPool
	EKIntermediates *x509.CertPool
	// ChallengeTTL bounds the time between the two enrolment steps; 0
	// means 5 minutes.
	ChallengeTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness; nil means crypto/rand.
	Rand io.Reader
}

// DefaultConfig accepts any EK (no manufacturer check).
func DefaultConfig() Config { return Config{ChallengeTTL: 5 * time.Minute} }

// Validate checks the config.
func (c Config) Validate() error {
	if c.RequireEKCert && c.EKRoots == nil {
		return errors.New("attest: an EK certificate is required but no vendor roots are configured")
	}
	return nil
}

// Verifier checks evidence and makes challenges. Safe for concurrent use.
type Verifier struct {
	cfg  Config
	aead cipher.AEAD
}

// New returns a verifier with a fresh sealing key.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(cfg.Rand, key); err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Verifier{cfg: cfg, aead: aead}, nil
}

// Evidence is what the agent sent (see internal/tpm.Evidence for the
// encodings) plus what the server binds it to.
type Evidence struct {
	EKPublic, EKCertificate, AKPublic, KeyPublic, CertifyInfo, CertifySignature []byte
	// CSRPublicKey is the public key of the request's CSR.
	CSRPublicKey any
	// QualifyingData is what the certify must carry: SHA-256 of the CSR.
	QualifyingData []byte
	// Binding ties a challenge to this request (token, CSR, evidence).
	Binding []byte
}

// Checked is evidence that passed Check.
type Checked struct {
	ev     Evidence
	ekPub  *tpm2.TPMTPublic
	akName []byte
	// EKFingerprint is SHA-256 of the EK public key (PKIX DER), hex.
	EKFingerprint string
	// EKCertVerified is true when the EK certificate chained to a root.
	EKCertVerified bool
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// Check verifies everything that does not need the TPM's answer: the EK
// (and its certificate per policy), the AK's attributes, the device key's
// attributes and that it is the CSR's key, and the AK's certify of it.
func (v *Verifier) Check(ev Evidence) (*Checked, error) {
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EKPublic)
	if err != nil {
		return nil, refuse("EK public area: %v", err)
	}
	ekKey, err := tpm2.Pub(*ekPub)
	if err != nil {
		return nil, refuse("EK public key: %v", err)
	}
	ekDER, err := x509.MarshalPKIXPublicKey(ekKey)
	if err != nil {
		return nil, refuse("EK public key: %v", err)
	}
	if a := ekPub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.Restricted || !a.Decrypt {
		return nil, refuse("EK is not a fixed, restricted decryption key")
	}
	if _, err := tpm2.ImportEncapsulationKey(ekPub); err != nil {
		return nil, refuse("EK cannot receive a credential: %v", err)
	}
	sum := sha256.Sum256(ekDER)
	c := &Checked{ev: ev, ekPub: ekPub, EKFingerprint: hex.EncodeToString(sum[:])}
	if err := v.checkEKCert(c, ekDER); err != nil {
		return nil, err
	}

	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		return nil, refuse("AK public area: %v", err)
	}
	if a := akPub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.Restricted || !a.SignEncrypt || a.Decrypt {
		return nil, refuse("AK is not a TPM-generated, fixed, restricted signing key")
	}
	akKey, err := ecdsaPub(akPub)
	if err != nil {
		return nil, refuse("AK: %v", err)
	}
	akName, err := tpm2.ObjectName(akPub)
	if err != nil {
		return nil, refuse("AK name: %v", err)
	}
	c.akName = akName.Buffer

	keyPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.KeyPublic)
	if err != nil {
		return nil, refuse("device key public area: %v", err)
	}
	if a := keyPub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt || a.Restricted {
		return nil, refuse("device key is not a TPM-generated, non-exportable signing key")
	}
	if keyPub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, refuse("device key name algorithm %v, want SHA-256", keyPub.NameAlg)
	}
	devKey, err := ecdsaPub(keyPub)
	if err != nil {
		return nil, refuse("device key: %v", err)
	}
	if csrKey, ok := ev.CSRPublicKey.(*ecdsa.PublicKey); !ok || !csrKey.Equal(devKey) {
		return nil, refuse("the CSR is not for the attested key")
	}
	keyName, err := tpm2.ObjectName(keyPub)
	if err != nil {
		return nil, refuse("device key name: %v", err)
	}

	// The certify: signed by the AK, made by a TPM, fresh for this CSR,
	// naming the device key.
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ev.CertifySignature)
	if err != nil {
		return nil, refuse("certify signature: %v", err)
	}
	ec, err := sig.Signature.ECDSA()
	if err != nil || ec.Hash != tpm2.TPMAlgSHA256 {
		return nil, refuse("certify signature is not ECDSA/SHA-256")
	}
	digest := sha256.Sum256(ev.CertifyInfo)
	der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer)})
	if !ecdsa.VerifyASN1(akKey, digest[:], der) {
		return nil, refuse("certify is not signed by the AK")
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.CertifyInfo)
	if err != nil {
		return nil, refuse("certify info: %v", err)
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestCertify {
		return nil, refuse("certify info was not made by a TPM's TPM2_Certify")
	}
	if !bytes.Equal(att.ExtraData.Buffer, ev.QualifyingData) {
		return nil, refuse("certify is not for this request")
	}
	ci, err := att.Attested.Certify()
	if err != nil {
		return nil, refuse("certify info: %v", err)
	}
	if !bytes.Equal(ci.Name.Buffer, keyName.Buffer) {
		return nil, refuse("certify names another key than the device key")
	}
	return c, nil
}

func (v *Verifier) checkEKCert(c *Checked, ekDER []byte) error {
	if len(c.ev.EKCertificate) == 0 {
		if v.cfg.RequireEKCert {
			return refuse("this TPM presents no EK certificate and the server requires one")
		}
		return nil
	}
	cert, err := x509.ParseCertificate(c.ev.EKCertificate)
	if err != nil {
		if v.cfg.RequireEKCert {
			return refuse("EK certificate: %v", err)
		}
		return nil // a malformed vendor certificate is only informative here
	}
	certKey, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil || !bytes.Equal(certKey, ekDER) {
		return refuse("the EK certificate is for another key than the EK")
	}
	if v.cfg.EKRoots == nil {
		return nil
	}
	// EK certificates mark their TPM-specific subject alternative name
	// critical; x509 does not understand it. The chain is what we check.
	cert.UnhandledCriticalExtensions = nil
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: v.cfg.EKRoots, Intermediates: v.cfg.EKIntermediates,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: v.cfg.Now(),
	}); err != nil {
		if v.cfg.RequireEKCert {
			return refuse("EK certificate does not chain to a configured TPM vendor root: %v", err)
		}
		return nil
	}
	c.EKCertVerified = true
	return nil
}

// Challenge is a MakeCredential result plus the sealed state.
type Challenge struct {
	CredentialBlob  []byte // TPM2B_ID_OBJECT contents
	EncryptedSecret []byte // TPM2B_ENCRYPTED_SECRET contents
	State           []byte // opaque; returned unchanged with the answer
}

const secretLen = 32

// Challenge encrypts a fresh secret to the EK, bound to the AK's name.
func (v *Verifier) Challenge(c *Checked) (*Challenge, error) {
	secret := make([]byte, secretLen)
	if _, err := io.ReadFull(v.cfg.Rand, secret); err != nil {
		return nil, err
	}
	ek, err := tpm2.ImportEncapsulationKey(c.ekPub)
	if err != nil {
		return nil, refuse("EK: %v", err)
	}
	blob, enc, err := tpm2.CreateCredential(v.cfg.Rand, ek, c.akName, secret)
	if err != nil {
		return nil, fmt.Errorf("make credential: %w", err)
	}
	// state plaintext: expiry (8) || secret (32); the binding is the AAD.
	pt := binary.BigEndian.AppendUint64(nil, uint64(v.cfg.Now().Add(v.cfg.ChallengeTTL).Unix()))
	pt = append(pt, secret...)
	nonce := make([]byte, v.aead.NonceSize())
	if _, err := io.ReadFull(v.cfg.Rand, nonce); err != nil {
		return nil, err
	}
	return &Challenge{CredentialBlob: blob, EncryptedSecret: enc, State: v.aead.Seal(nonce, nonce, pt, c.binding())}, nil
}

// Verify checks the agent's answer to a challenge made for the same
// evidence and binding.
func (v *Verifier) Verify(c *Checked, state, secret []byte) error {
	ns := v.aead.NonceSize()
	if len(state) < ns {
		return refuse("challenge state is malformed")
	}
	pt, err := v.aead.Open(nil, state[:ns], state[ns:], c.binding())
	if err != nil || len(pt) != 8+secretLen {
		return refuse("challenge is not this server's or not for this request (the server may have restarted: enrol again)")
	}
	if v.cfg.Now().Unix() > int64(binary.BigEndian.Uint64(pt[:8])) {
		return refuse("challenge expired: enrol again")
	}
	if subtle.ConstantTimeCompare(pt[8:], secret) != 1 {
		return refuse("wrong answer to the credential challenge: the AK is not in the TPM of this EK")
	}
	return nil
}

func (c *Checked) binding() []byte {
	h := sha256.New()
	for _, b := range [][]byte{c.ev.Binding, c.ev.EKPublic, c.ev.AKPublic, c.ev.KeyPublic} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	return h.Sum(nil)
}

func ecdsaPub(p *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	k, err := tpm2.Pub(*p)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ek, nil
}
