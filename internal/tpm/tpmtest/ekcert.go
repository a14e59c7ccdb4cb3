package tpmtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// nvECCEKCert is the TCG index of the ECC (P-256) EK certificate.
const nvECCEKCert tpm2.TPMHandle = 0x01c0000a

// ProvisionEKCert does what a TPM manufacturer does: it makes a test root
// CA, a certificate for tp's ECC endorsement key signed by that root, and
// writes the certificate into tp's NV at the ECC EK certificate index,
// where internal/tpm reads it. It returns the root as PEM, for a server's
// --ek-roots.
func ProvisionEKCert(t testing.TB, tp transport.TPM) []byte {
	t.Helper()
	ek, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpm2.ECCEKTemplate)}.Execute(tp)
	if err != nil {
		t.Fatalf("create EK: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: ek.ObjectHandle}.Execute(tp)
	pub, err := ek.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	ekKey, err := tpm2.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mamori test TPM vendor root"},
		NotBefore: now.AddDate(-10, 0, 0), NotAfter: now.AddDate(20, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	ekDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test EK"},
		NotBefore: now.AddDate(-10, 0, 0), NotAfter: now.AddDate(20, 0, 0), KeyUsage: x509.KeyUsageKeyAgreement,
	}, root, ekKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	def := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHOwner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: nvECCEKCert, NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
			DataSize:   uint16(len(ekDER)),
		}),
	}
	if _, err := def.Execute(tp); err != nil {
		t.Fatalf("define the EK certificate's NV index: %v", err)
	}
	nvPub, err := def.PublicInfo.Contents()
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.NVName(nvPub)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 512
	for off := 0; off < len(ekDER); off += chunk {
		end := min(off+chunk, len(ekDER))
		if _, err := (tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: nvECCEKCert, Name: *name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: nvECCEKCert, Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: ekDER[off:end]},
			Offset:     uint16(off),
		}).Execute(tp); err != nil {
			t.Fatalf("write the EK certificate: %v", err)
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
}
