package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Sealing: a small secret (at most MaxSealed bytes; callers seal a key and
// encrypt the real data with it) kept as a TPM sealed-data object under
// the SRK. Only the TPM that sealed it can unseal it; a blob copied to
// another machine, or changed by one bit, does not load.
//
// Policy choice: no PCR policy. Binding to PCRs (boot measurements) would
// make every firmware, boot loader or kernel update on hundreds of
// terminals lock the agent out of its own MFA secrets until a re-seal;
// the threat sealing answers here is a copied disk or state directory,
// which the SRK binding already defeats. The object has an empty
// authValue and noDA, so the agent unsealing it can never trip or be
// blocked by the TPM's dictionary-attack lockout caused by PIN guessing.

// MaxSealed is the largest secret Seal accepts (MAX_SYM_DATA).
const MaxSealed = 128

// SealTemplate is the sealed-data object: keyedHash with null scheme,
// fixedTPM|fixedParent|userWithAuth|noDA, data supplied by the caller.
var SealTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:     true,
		FixedParent:  true,
		UserWithAuth: true,
		NoDA:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// Seal seals secret in t under the SRK. The secret travels to the TPM
// encrypted (salted session, parameter encryption).
func Seal(t transport.TPM, secret []byte) (Blob, error) {
	if len(secret) == 0 || len(secret) > MaxSealed {
		return Blob{}, fmt.Errorf("TPM seal: secret must be 1..%d bytes", MaxSealed)
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
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(SealTemplate),
	}.Execute(t)
	if err != nil {
		return Blob{}, fmt.Errorf("TPM seal: %w", err)
	}
	return Blob{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}, nil
}

// Unseal returns the secret sealed in b. It fails on another TPM and on a
// blob that was changed (the TPM checks the private area's integrity and
// its binding to the public area). The secret travels back encrypted.
func Unseal(t transport.TPM, b Blob) ([]byte, error) {
	p, err := blobPublic(b)
	if err != nil {
		return nil, err
	}
	if p.Type != tpm2.TPMAlgKeyedHash || p.ObjectAttributes.SensitiveDataOrigin || !p.ObjectAttributes.FixedTPM {
		return nil, fmt.Errorf("TPM unseal: %w: not a sealed-data object", ErrBadBlob)
	}
	pub2b, _ := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](b.Private)
	if err != nil {
		return nil, fmt.Errorf("TPM sealed blob: %w: private part: %w", ErrBadBlob, err)
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
		return nil, fmt.Errorf("TPM unseal: the sealed blob does not load (damaged, copied from another terminal, or the TPM was cleared): %w", err)
	}
	defer flush(t, lrsp.ObjectHandle)
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: lrsp.ObjectHandle, Name: lrsp.Name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(srk.Handle, *srkPub), tpm2.AESEncryption(128, tpm2.EncryptOut))},
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM unseal: %w", err)
	}
	return rsp.OutData.Buffer, nil
}
