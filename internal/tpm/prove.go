package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// NV indices of the EK certificates a manufacturer provisions (TCG EK
// Credential Profile, section 2.2.1.4).
const (
	nvECCEKCert tpm2.TPMHandle = 0x01c0000a
	nvRSAEKCert tpm2.TPMHandle = 0x01c00002
)

// AKTemplate is the attestation key: a restricted ECDSA P-256/SHA-256
// signing key. Restricted means it signs only structures the TPM itself
// produced (TPM2_Certify, TPM2_Quote), never a digest handed in that starts
// with TPM_GENERATED_VALUE, so a certify it signed cannot be forged through
// it.
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
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

// Evidence is what the prover sends with an attested enrolment. Public
// areas are TPMT_PUBLIC, CertifyInfo a TPMS_ATTEST and CertifySignature a
// TPMT_SIGNATURE, all in TPM wire format.
type Evidence struct {
	EKPublic         []byte
	EKCertificate    []byte // DER; nil when the TPM holds none
	AKPublic         []byte
	KeyPublic        []byte
	CertifyInfo      []byte
	CertifySignature []byte
}

// Attestation is an attested enrolment in progress: the EK and a fresh AK
// stay loaded until the server's challenge is answered. Close it.
type Attestation struct {
	t  transport.TPM
	ek *tpm2.CreatePrimaryResponse
	ak tpm2.NamedHandle
}

// Attest proves that key lives in its TPM: it creates the EK, a fresh AK
// under the SRK, and has the AK certify key with qualifyingData (the
// server checks it; mamori uses SHA-256 of the CSR).
func Attest(key *Key, qualifyingData []byte) (*Attestation, *Evidence, error) {
	key.mu.Lock()
	defer key.mu.Unlock()
	if !key.loaded {
		if err := key.load(); err != nil {
			return nil, nil, err
		}
	}
	t := key.tpm
	a := &Attestation{t: t}
	fail := func(err error) (*Attestation, *Evidence, error) {
		a.Close()
		return nil, nil, err
	}
	// Order matters on TPMs with three transient slots: the device key,
	// then SRK + AK (SRK flushed once the AK is loaded), then the EK.
	srk, err := createSRK(t)
	if err != nil {
		return fail(err)
	}
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}
	cr, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(AKTemplate)}.Execute(t)
	if err != nil {
		flush(t, srk.ObjectHandle)
		return fail(fmt.Errorf("create attestation key: %w", err))
	}
	lr, err := tpm2.Load{ParentHandle: parent, InPrivate: cr.OutPrivate, InPublic: cr.OutPublic}.Execute(t)
	flush(t, srk.ObjectHandle)
	if err != nil {
		return fail(fmt.Errorf("load attestation key: %w", err))
	}
	a.ak = tpm2.NamedHandle{Handle: lr.ObjectHandle, Name: lr.Name}
	cert, err := tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: key.handle.Handle, Name: key.handle.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: a.ak.Handle, Name: a.ak.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: qualifyingData},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(t)
	if err != nil {
		return fail(fmt.Errorf("certify the device key with the attestation key: %w", err))
	}
	ekCert, ekTemplate := readEKCert(t)
	ek, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(ekTemplate)}.Execute(t)
	if err != nil {
		return fail(fmt.Errorf("create the endorsement key (endorsement hierarchy; is an endorsement password set?): %w", err))
	}
	a.ek = ek
	ekPub, err := ek.OutPublic.Contents()
	if err != nil {
		return fail(err)
	}
	akPub, err := cr.OutPublic.Contents()
	if err != nil {
		return fail(err)
	}
	info, err := cert.CertifyInfo.Contents()
	if err != nil {
		return fail(err)
	}
	return a, &Evidence{
		EKPublic:         tpm2.Marshal(ekPub),
		EKCertificate:    ekCert,
		AKPublic:         tpm2.Marshal(akPub),
		KeyPublic:        tpm2.Marshal(&key.public),
		CertifyInfo:      tpm2.Marshal(info),
		CertifySignature: tpm2.Marshal(&cert.Signature),
	}, nil
}

// Activate answers the server's challenge: TPM2_ActivateCredential with the
// AK and the EK. Only the TPM holding both can recover the secret.
func (a *Attestation) Activate(credentialBlob, encryptedSecret []byte) ([]byte, error) {
	if a.ek == nil || a.ak.Handle == 0 {
		return nil, errors.New("attestation is closed")
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: a.ak,
		KeyHandle: tpm2.AuthHandle{
			Handle: a.ek.ObjectHandle,
			Name:   a.ek.Name,
			Auth:   tpm2.Policy(tpm2.TPMAlgSHA256, 16, ekPolicy),
		},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
	}.Execute(a.t)
	if err != nil {
		return nil, fmt.Errorf("activate the enrolment challenge: %w", err)
	}
	return rsp.CertInfo.Buffer, nil
}

// Close flushes the EK and AK.
func (a *Attestation) Close() error {
	if a.ek != nil {
		flush(a.t, a.ek.ObjectHandle)
		a.ek = nil
	}
	if a.ak.Handle != 0 {
		flush(a.t, a.ak.Handle)
		a.ak = tpm2.NamedHandle{}
	}
	return nil
}

// ekPolicy satisfies the TCG EK's policy: PolicySecret(TPM_RH_ENDORSEMENT).
func ekPolicy(t transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.TPMRHEndorsement,
		PolicySession: handle,
		NonceTPM:      nonceTPM,
	}.Execute(t)
	return err
}

// readEKCert returns the manufacturer's EK certificate and the template of
// the EK it certifies: ECC when the TPM has an ECC EK certificate or none
// at all, RSA when it has only an RSA one.
func readEKCert(t transport.TPM) ([]byte, tpm2.TPMTPublic) {
	if c, err := readNV(t, nvECCEKCert); err == nil {
		return c, tpm2.ECCEKTemplate
	}
	if c, err := readNV(t, nvRSAEKCert); err == nil {
		return c, tpm2.RSAEKTemplate
	}
	return nil, tpm2.ECCEKTemplate
}

func readNV(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		return nil, err
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	const chunk = 512 // below every TPM's MAX_NV_BUFFER_SIZE
	var out []byte
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return nil, err
		}
		out = append(out, r.Data.Buffer...)
	}
	return out, nil
}
