package tpm

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TPM-bound PIN keys (the Windows Hello for Business model): a user's PIN
// is the authValue of a non-exportable P-256 signing key inside this
// terminal's TPM. Knowing the PIN is worthless without the TPM that holds
// the key, and the TPM's dictionary-attack (DA) protection limits how
// often a PIN can be guessed, for every PIN key of the TPM at once.
//
// The agent keeps only the key's Blob (public area + private area
// encrypted by the SRK). A login proves possession by having the TPM sign
// a fresh random challenge, authorised with the PIN, and checking the
// signature against the stored public key (verifier half: VerifyPINSignature).
//
// The PIN never crosses the bus in the clear: commands that carry it use
// an HMAC session salted to the SRK, with parameter encryption when the
// PIN is a parameter (TPM2_Create).

// Errors a caller must tell apart. Neither carries the PIN.
var (
	// ErrWrongPIN: the TPM refused the PIN (TPM_RC_AUTH_FAIL/BAD_AUTH);
	// the TPM's DA failure counter went up by one.
	ErrWrongPIN = errors.New("TPM refused the PIN")
	// ErrLockedOut: the TPM is in dictionary-attack lockout and refuses
	// every DA-protected authorisation, right PIN included, until its
	// recovery time has passed or the owner resets the lockout.
	ErrLockedOut = errors.New("TPM is in dictionary-attack lockout (too many wrong PINs); wait for its recovery time or have the lockout reset")
)

// PINKeyTemplate is a user's PIN key: ECC P-256, ECDSA-SHA256 signing
// only, generated in the TPM, never duplicable, authorised by its
// authValue (the PIN; userWithAuth) and — unlike the device key — subject
// to DA protection (noDA clear), so PIN guessing runs into the TPM's
// lockout.
var PINKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                false,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// CreatePINKey makes a new PIN key in t with pin as its authValue and
// returns its stored form. The PIN is sent encrypted (salted session).
func CreatePINKey(t transport.TPM, pin []byte) (Blob, error) {
	if len(pin) == 0 {
		return Blob{}, errors.New("create PIN key: empty PIN")
	}
	srk, srkPub, err := loadSRK(t)
	if err != nil {
		return Blob{}, err
	}
	defer flush(t, srk.Handle)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(srk.Handle, *srkPub), tpm2.AESEncryption(128, tpm2.EncryptIn))},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: pin},
		}},
		InPublic: tpm2.New2B(PINKeyTemplate),
	}.Execute(t)
	if err != nil {
		return Blob{}, fmt.Errorf("create PIN key in the TPM: %w", err)
	}
	return Blob{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}, nil
}

// PINKeyPublic returns the public key of a stored PIN key, after checking
// that the blob's public area is a PIN key (P-256, sign, fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth, DA-protected).
func PINKeyPublic(b Blob) (*ecdsa.PublicKey, error) {
	p, err := blobPublic(b)
	if err != nil {
		return nil, err
	}
	a := p.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.UserWithAuth || a.NoDA || !a.SignEncrypt || a.Decrypt || a.Restricted {
		return nil, errors.New("PIN key blob: attributes are not those of a PIN key")
	}
	return ECDSAPublic(p)
}

// SignWithPIN has the PIN key in b sign digest (SHA-256 sized), authorised
// with pin, and returns an ASN.1 ECDSA signature. A wrong PIN gives an
// error wrapping ErrWrongPIN, DA lockout one wrapping ErrLockedOut.
func SignWithPIN(t transport.TPM, b Blob, pin, digest []byte) ([]byte, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("PIN sign: digest is %d bytes, want %d", len(digest), sha256.Size)
	}
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	if err != nil {
		return nil, fmt.Errorf("PIN key blob: public part: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](b.Private)
	if err != nil {
		return nil, fmt.Errorf("PIN key blob: private part: %w", err)
	}
	srk, srkPub, err := loadSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, srk.Handle)
	lrsp, err := tpm2.Load{
		ParentHandle: tpm2.NamedHandle{Handle: srk.Handle, Name: srk.Name},
		InPrivate:    *priv,
		InPublic:     *pub2b,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("load the PIN key into the TPM (enrolled on another terminal, or the TPM was cleared? then enrol the PIN again): %w", err)
	}
	defer flush(t, lrsp.ObjectHandle)
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: lrsp.ObjectHandle, Name: lrsp.Name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(pin), tpm2.Salted(srk.Handle, *srkPub))},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t)
	switch {
	case errors.Is(err, tpm2.TPMRCLockout):
		return nil, ErrLockedOut
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return nil, ErrWrongPIN
	case err != nil:
		return nil, fmt.Errorf("PIN sign: %w", err)
	}
	ec, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("PIN sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer),
	})
}

// VerifyPIN proves that pin opens the PIN key in b on this TPM: a fresh
// 32-byte random challenge is signed in the TPM and the signature checked
// against the public key stored in b (so a blob whose public part was
// swapped, or a TPM answering with another key, fails). nil means the PIN
// is right.
func VerifyPIN(t transport.TPM, b Blob, pin []byte) error {
	pub, err := PINKeyPublic(b)
	if err != nil {
		return err
	}
	var challenge [32]byte
	if _, err := rand.Read(challenge[:]); err != nil {
		return err
	}
	d := sha256.Sum256(append([]byte("mamori pin login v1\x00"), challenge[:]...))
	sig, err := SignWithPIN(t, b, pin, d[:])
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		return errors.New("PIN key: the TPM's signature does not verify against the stored public key")
	}
	return nil
}

// ErrBadBlob: a stored blob does not parse or is not what it should be;
// no TPM will ever accept it.
var ErrBadBlob = errors.New("TPM blob is damaged or of the wrong kind")

func blobPublic(b Blob) (*tpm2.TPMTPublic, error) {
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	if err != nil {
		return nil, fmt.Errorf("%w: public part: %w", ErrBadBlob, err)
	}
	p, err := pub2b.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: public part: %w", ErrBadBlob, err)
	}
	return p, nil
}

// loadSRK creates the SRK and returns its handle and public area (for
// salting sessions). The caller flushes it.
func loadSRK(t transport.TPM) (tpm2.NamedHandle, *tpm2.TPMTPublic, error) {
	srk, err := createSRK(t)
	if err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	pub, err := srk.OutPublic.Contents()
	if err != nil {
		flush(t, srk.ObjectHandle)
		return tpm2.NamedHandle{}, nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	return tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}, pub, nil
}
