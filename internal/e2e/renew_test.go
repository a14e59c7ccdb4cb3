package e2e

import (
	"crypto"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

func loadIdentity(t *testing.T, dir *state.Dir) *state.Identity {
	t.Helper()
	id, err := dir.LoadIdentity()
	if err != nil {
		t.Fatalf("load identity: %v", err)
	}
	return id
}

// waitRenewed waits until the certificate on disk is not old's.
func waitRenewed(t *testing.T, a *agent, dir *state.Dir, old string) *state.Identity {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.waitRound(t, "a report", func(r daemon.RoundResult) bool { return true })
		id := loadIdentity(t, dir)
		if pki.SerialHex(id.Cert) != old {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate %s not renewed after 20 s", old)
		}
	}
}

// The agent renews its certificate at two thirds of its lifetime over
// mutual TLS with the real server, saves it, and keeps reporting — past
// the end of the old certificate too.
func TestAgentRenewsBeforeExpiry(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	dir := enrolAgent(t, h, t.TempDir(), "pc-renew")
	old := loadIdentity(t, dir)
	h.Clock.Advance(pki.DeviceValidity*2/3 + time.Hour)

	a := startAgent(t, dir, h.Clock.Now, "pc-renew")
	id := waitRenewed(t, a, dir, pki.SerialHex(old.Cert))
	sameKey := old.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(id.Cert.PublicKey)
	if !id.Cert.NotAfter.After(old.Cert.NotAfter) || !sameKey {
		t.Fatalf("renewed certificate: not after %v (old %v), same key %v", id.Cert.NotAfter, old.Cert.NotAfter, sameKey)
	}
	dev, err := h.Srv.Store().GetDevice(ctx, id.Device.DeviceID)
	if err != nil || dev.CertSerial != pki.SerialHex(id.Cert) {
		t.Fatalf("server's current serial %q (%v), want the renewed %s", dev.CertSerial, err, pki.SerialHex(id.Cert))
	}
	a.waitRound(t, "a report with the renewed certificate", func(r daemon.RoundResult) bool { return r.Err == nil })

	h.Clock.Advance(pki.DeviceValidity/3 + time.Hour) // the old certificate has expired
	a.waitRound(t, "a report after the old certificate expired", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	if got := loadIdentity(t, dir); pki.SerialHex(got.Cert) != pki.SerialHex(id.Cert) {
		t.Errorf("renewed again although not due: %s, want %s", pki.SerialHex(got.Cert), pki.SerialHex(id.Cert))
	}
}

// A renewal interrupted mid-way leaves a usable identity: the server
// issued a certificate but the agent was killed before it saved it (the
// answer is thrown away here, exactly what the server sees), and the kill
// also left a half-written temporary file of cert.pem behind. The agent
// starts, reports with the old certificate, renews again and goes on.
func TestAgentRenewalInterrupted(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	dir := enrolAgent(t, h, t.TempDir(), "pc-cut")
	old := loadIdentity(t, dir)
	h.Clock.Advance(pki.DeviceValidity*2/3 + time.Hour)

	cert := old.TLSCertificate()
	cc := h.Dial(t, pki.ClientTLSConfig(old.CAPool(), &cert, "localhost"))
	csr, err := pki.NewCSR(old.Key, "pc-cut")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := mamoriv1.NewAgentServiceClient(cc).Renew(ctx, &mamoriv1.RenewRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir.Path(), "."+state.CertFile+".tmp123456")
	if err := os.WriteFile(torn, []byte("-----BEGIN CERTIFICATE-----\nMIIB"), 0o644); err != nil {
		t.Fatal(err)
	}

	if got := loadIdentity(t, dir); pki.SerialHex(got.Cert) != pki.SerialHex(old.Cert) {
		t.Fatalf("identity after the interruption is %s, want the old %s", pki.SerialHex(got.Cert), pki.SerialHex(old.Cert))
	}
	a := startAgent(t, dir, h.Clock.Now, "pc-cut")
	first := a.waitRound(t, "the first round", func(r daemon.RoundResult) bool { return true })
	if first.Err != nil {
		t.Fatalf("report with the old certificate after an interrupted renewal: %v", first.Err)
	}
	id := waitRenewed(t, a, dir, pki.SerialHex(old.Cert))
	a.waitRound(t, "a report with the new certificate", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()

	// The certificate the agent never saved is no longer accepted.
	lostCert := tls.Certificate{Certificate: [][]byte{lost.Certificate}, PrivateKey: old.Key}
	_, err = mamoriv1.NewAgentServiceClient(h.Dial(t, pki.ClientTLSConfig(old.CAPool(), &lostCert, "localhost"))).
		Report(ctx, &mamoriv1.ReportRequest{})
	if err == nil {
		t.Error("the certificate of the lost renewal still works")
	}
	if pki.SerialHex(id.Cert) == pki.SerialHex(old.Cert) {
		t.Error("not renewed")
	}
}

// An expired certificate is refused; the agent says so in its round
// result (and log) with what to do, and keeps enforcing.
func TestAgentExpiredCertificate(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	dir := enrolAgent(t, h, t.TempDir(), "pc-old")
	h.Clock.Advance(pki.DeviceValidity + time.Hour)
	a := startAgent(t, dir, h.Clock.Now, "pc-old")
	r := a.waitRound(t, "a refused round", func(r daemon.RoundResult) bool { return r.Err != nil })
	if !errors.Is(r.Err, enroll.ErrCertExpired) {
		t.Fatalf("round error %v, want ErrCertExpired", r.Err)
	}
	if len(r.Statuses) == 0 {
		t.Error("no control ran: enforcement must go on while the server refuses")
	}
	a.stop()
	id := loadIdentity(t, dir)
	if err := enroll.Expired(id.Cert, h.Clock.Now()); !errors.Is(err, enroll.ErrCertExpired) {
		t.Errorf("Expired = %v", err)
	}
}

// A TPM-resident key renews like a file key: the agent signs the renewal
// CSR in the TPM, the new certificate keeps the key (still in the TPM)
// and its attestation, and the agent keeps reporting with it. (The TPM's
// EK certificate chains to the server's --ek-roots: only a verified EK
// is attested.)
func TestAgentRenewsTPMKey(t *testing.T) {
	tp := tpmtest.Open(t, 1)
	roots := filepath.Join(t.TempDir(), "ek-roots.pem")
	if err := os.WriteFile(roots, tpmtest.ProvisionEKCert(t, tp), 0o600); err != nil {
		t.Fatal(err)
	}
	h := servertest.Start(t, servertest.Options{EKRootsFile: roots})
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tp)
	res, err := enrolTPM(t, h, dir, "tpm-renew")
	if err != nil || !res.Attested {
		t.Fatalf("enrol: %v (attested %v)", err, res != nil && res.Attested)
	}
	old := res.Identity
	h.Clock.Advance(pki.DeviceValidity*2/3 + time.Hour)
	a := startAgent(t, dir, h.Clock.Now, "tpm-renew")
	id := waitRenewed(t, a, dir, pki.SerialHex(old.Cert))
	a.waitRound(t, "a report with the renewed certificate", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	if _, ok := id.Key.(*tpm.Key); !ok {
		t.Errorf("renewed identity's key is %T, want the TPM key", id.Key)
	}
	if !pki.KeyAttested(id.Cert) {
		t.Error("renewed certificate lost the key attestation")
	}
	dev, err := h.Srv.Store().GetDevice(ctx, id.Device.DeviceID)
	if err != nil || !dev.KeyAttested || dev.CertSerial != pki.SerialHex(id.Cert) {
		t.Errorf("server: attested %v serial %s (%v), want attested with %s", dev.KeyAttested, dev.CertSerial, err, pki.SerialHex(id.Cert))
	}
}
