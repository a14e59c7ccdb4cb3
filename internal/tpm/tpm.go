// Package tpm is mamori's use of a TPM 2.0, shared by the agent's device
// identity (and, later, TPM-bound login PINs): opening the platform TPM,
// a non-exportable ECDSA P-256 key under the storage hierarchy used as a
// crypto.Signer, and the prover's half of attested enrolment (prove.go).
// The verifier's half lives in server/attest and never shares code with
// this side beyond go-tpm's structure definitions.
//
// Every operation takes a transport.TPM, so /dev/tpmrm0, Windows TBS, the
// go-tpm-tools simulator (tests only, see tpmtest) and swtpm swap freely.
//
// The key is created under a primary storage key made from the TCG ECC
// P-256 SRK template. Primary keys are derived from the owner hierarchy's
// seed, so the same SRK comes back after every reboot on the same TPM and
// on no other: the key blob (public part plus private part encrypted by
// the SRK) is useless anywhere else. The key is fixedTPM|fixedParent|
// sensitiveDataOrigin: the TPM generated it and refuses to duplicate it.
package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNoTPM means this machine has no TPM 2.0 the agent can use.
var ErrNoTPM = errors.New("no TPM 2.0 found")

// Open opens the platform TPM: /dev/tpmrm0 (the kernel's resource manager)
// on Linux, TBS on Windows. It returns an error wrapping ErrNoTPM when
// there is none.
func Open() (transport.TPMCloser, error) { return openPlatform() }

// srkTemplate is the TCG reference ECC P-256 storage root key template.
var srkTemplate = tpm2.ECCSRKTemplate

// KeyTemplate is the device key: ECC P-256, signing only, generated in the
// TPM (sensitiveDataOrigin), never leaves it (fixedTPM, fixedParent), empty
// auth and noDA so a stray wrong password cannot lock the TPM. The scheme
// is null so each TPM2_Sign names the hash the TLS stack asks for.
var KeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID:   tpm2.TPMECCNistP256,
		KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// Blob is a key as stored on disk: its public area and its private area
// encrypted by the SRK of the TPM that made it.
type Blob struct {
	Public  []byte `json:"public"`  // TPM2B_PUBLIC
	Private []byte `json:"private"` // TPM2B_PRIVATE
}

// Encode returns the blob in its file format (JSON, base64 fields).
func (b Blob) Encode() ([]byte, error) { return json.MarshalIndent(b, "", "  ") }

// DecodeBlob parses Encode's output.
func DecodeBlob(b []byte) (Blob, error) {
	var bl Blob
	if err := json.Unmarshal(b, &bl); err != nil {
		return Blob{}, fmt.Errorf("TPM key blob: %w", err)
	}
	if len(bl.Public) == 0 || len(bl.Private) == 0 {
		return Blob{}, errors.New("TPM key blob: public or private part missing")
	}
	return bl, nil
}

// Key is a device key inside a TPM, loaded and ready to sign. It is a
// crypto.Signer (usable as tls.Certificate.PrivateKey) and holds no
// private key material. Safe for concurrent use.
type Key struct {
	mu     sync.Mutex
	tpm    transport.TPM
	blob   Blob
	public tpm2.TPMTPublic
	pub    *ecdsa.PublicKey
	handle tpm2.NamedHandle
	loaded bool
}

// CreateKey generates a new device key in the TPM and loads it.
func CreateKey(t transport.TPM) (*Key, error) {
	srk, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		InPublic:     tpm2.New2B(KeyTemplate),
	}.Execute(t)
	flush(t, srk.ObjectHandle) // LoadKey makes its own: keep slots free
	if err != nil {
		return nil, fmt.Errorf("create device key in the TPM: %w", err)
	}
	return LoadKey(t, Blob{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)})
}

// LoadKey loads a stored key into t. It fails on any TPM other than the one
// that created it.
func LoadKey(t transport.TPM, b Blob) (*Key, error) {
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	if err != nil {
		return nil, fmt.Errorf("TPM key blob: public part: %w", err)
	}
	public, err := pub2b.Contents()
	if err != nil {
		return nil, fmt.Errorf("TPM key blob: public part: %w", err)
	}
	pub, err := ECDSAPublic(public)
	if err != nil {
		return nil, err
	}
	k := &Key{tpm: t, blob: b, public: *public, pub: pub}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// ECDSAPublic returns the P-256 public key of a TPMT_PUBLIC.
func ECDSAPublic(p *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	if p.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("TPM key is not an ECC key (type %v)", p.Type)
	}
	parms, err := p.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("TPM key is not on P-256 (curve %v)", parms.CurveID)
	}
	pt, err := p.Unique.ECC()
	if err != nil {
		return nil, err
	}
	k := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)}
	if !k.Curve.IsOnCurve(k.X, k.Y) {
		return nil, errors.New("TPM key: point is not on P-256")
	}
	return k, nil
}

func (k *Key) load() error {
	srk, err := createSRK(k.tpm)
	if err != nil {
		return err
	}
	pub2b, _ := tpm2.Unmarshal[tpm2.TPM2BPublic](k.blob.Public)
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](k.blob.Private)
	if err != nil {
		flush(k.tpm, srk.ObjectHandle)
		return fmt.Errorf("TPM key blob: private part: %w", err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		InPrivate:    *priv,
		InPublic:     *pub2b,
	}.Execute(k.tpm)
	if err != nil {
		flush(k.tpm, srk.ObjectHandle)
		return fmt.Errorf("load the device key into the TPM (was the state directory copied from another terminal, or the TPM cleared? then enrol again): %w", err)
	}
	// A loaded key does not need its parent loaded: free the slot (the
	// simulator and some TPMs hold only three transient objects).
	flush(k.tpm, srk.ObjectHandle)
	k.handle = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	k.loaded = true
	return nil
}

// Blob returns the key's stored form.
func (k *Key) Blob() Blob { return k.blob }

// Public implements crypto.Signer.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// TPMPublic returns the key's TPMT_PUBLIC (what TPM2_Certify names).
func (k *Key) TPMPublic() tpm2.TPMTPublic { return k.public }

// Sign implements crypto.Signer: an ECDSA signature over digest, made by
// the TPM, ASN.1-encoded as crypto/ecdsa does.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, err := hashAlg(opts.HashFunc())
	if err != nil {
		return nil, err
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("TPM sign: digest is %d bytes, want %d", len(digest), opts.HashFunc().Size())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	sig, err := k.sign(alg, digest)
	if err != nil && k.loaded {
		// The handle may be gone (TPM reset, resource manager evicted
		// it): load once more and retry.
		k.unload()
		if lerr := k.load(); lerr != nil {
			return nil, errors.Join(err, lerr)
		}
		sig, err = k.sign(alg, digest)
	}
	return sig, err
}

func (k *Key) sign(alg tpm2.TPMIAlgHash, digest []byte) ([]byte, error) {
	if !k.loaded {
		if err := k.load(); err != nil {
			return nil, err
		}
	}
	rsp, err := tpm2.Sign{
		KeyHandle: k.handle,
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(k.tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM sign: %w", err)
	}
	ec, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("TPM sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer),
	})
}

// Handle is the loaded key (for TPM2_Certify by the prover).
func (k *Key) Handle() tpm2.NamedHandle { return k.handle }

// TPM is the transport the key is loaded in.
func (k *Key) TPM() transport.TPM { return k.tpm }

// Close flushes the key and its SRK from the TPM. The transport stays open.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unload()
	return nil
}

func (k *Key) unload() {
	if k.loaded {
		flush(k.tpm, k.handle.Handle)
		k.loaded = false
	}
}

func hashAlg(h crypto.Hash) (tpm2.TPMIAlgHash, error) {
	switch h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1, nil
	}
	return 0, fmt.Errorf("TPM sign: hash %v is not supported", h)
}

func createSRK(t transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(srkTemplate),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create the TPM storage root key (owner hierarchy; is an owner password set?): %w", err)
	}
	return rsp, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}
