package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/api"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// client dials the server presenting cert.
func client(t *testing.T, h *servertest.Harness, cert tls.Certificate) mamoriv1.AgentServiceClient {
	t.Helper()
	return mamoriv1.NewAgentServiceClient(h.Dial(t, pki.ClientTLSConfig(h.CAPool(), &cert, "localhost")))
}

// wantHandshakeRefused: the server refused the TLS handshake. In TLS 1.3
// the client learns it on its first read, as the alert "expired
// certificate" or, when its write races the server's close, a broken pipe;
// either way the call fails Unavailable and reaches no handler.
func wantHandshakeRefused(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call with an expired certificate: %v, want Unavailable (handshake refused)", err)
	}
	t.Logf("refused as expected: %v", err)
}

func renewCSR(t *testing.T, d *servertest.Device) *mamoriv1.RenewRequest {
	t.Helper()
	csr, err := pki.NewCSR(d.Key, "pc")
	if err != nil {
		t.Fatal(err)
	}
	return &mamoriv1.RenewRequest{Csr: csr}
}

func agentReport() *mamoriv1.ReportRequest {
	return &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}
}

func TestRenewBeforeExpiry(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRenewBeforeExpiry(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testRenewBeforeExpiry(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

// testRenewBeforeExpiry: at two thirds of its lifetime a device renews over
// mutual TLS with its current certificate and gets a new one for the same
// key and device, valid for a full lifetime from now; both work until the
// old one expires, after which only the new one does. The renewal is in
// the audit log.
func testRenewBeforeExpiry(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	d := enroll(t, h, "pc-renew")
	old, err := x509.ParseCertificate(d.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	h.Clock.Advance(pki.DeviceValidity * 2 / 3)
	resp, err := d.Client.Renew(ctx, renewCSR(t, d))
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := pki.DeviceIDFromCert(cert); err != nil || id != d.ID {
		t.Errorf("renewed certificate names device %q (%v), want %s", id, err, d.ID)
	}
	if !d.Key.PublicKey.Equal(cert.PublicKey) {
		t.Error("renewed certificate is for another key")
	}
	if cert.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("renewed certificate has the old serial")
	}
	if want := h.Clock.Now().Add(pki.DeviceValidity); !cert.NotAfter.Equal(want.Truncate(time.Second)) || !resp.NotAfter.AsTime().Equal(cert.NotAfter) {
		t.Errorf("not after %v (answer says %v), want %v", cert.NotAfter, resp.NotAfter.AsTime(), want)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: h.CAPool(), CurrentTime: h.Clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("renewed certificate does not verify: %v", err)
	}
	renewed := client(t, h, tls.Certificate{Certificate: [][]byte{resp.Certificate}, PrivateKey: d.Key})
	if _, err := renewed.Report(ctx, agentReport()); err != nil {
		t.Fatalf("report with the renewed certificate: %v", err)
	}
	if _, err := d.Client.Report(ctx, agentReport()); err != nil {
		t.Fatalf("report with the certificate renewed from (not yet expired): %v", err)
	}
	audit, err := h.Admin(t, h.AdminToken).ListAudit(ctx, &mamoriv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range audit.Records {
		if r.Action == "device.renew" && r.Target == d.ID && strings.Contains(r.Detail, "serial="+pki.SerialHex(cert)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no device.renew audit record for %s", d.ID)
	}

	// Past the old certificate's end: it is refused in the handshake,
	// the renewed one keeps working.
	h.Clock.Advance(pki.DeviceValidity/3 + time.Hour)
	_, err = client(t, h, d.Cert).Report(ctx, agentReport())
	wantHandshakeRefused(t, err)
	if _, err := renewed.Report(ctx, agentReport()); err != nil {
		t.Fatalf("report with the renewed certificate after the old one expired: %v", err)
	}
}

// An expired certificate cannot renew: the terminal needs a new token.
func TestRenewExpiredRefused(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-expired")
	h.Clock.Advance(pki.DeviceValidity + time.Minute)
	_, err := client(t, h, d.Cert).Renew(ctx, renewCSR(t, d))
	wantHandshakeRefused(t, err)
	if dev := deviceState(t, h, d.ID); dev.LastSeen != nil {
		t.Errorf("refused renewal touched the device: last seen %v", dev.LastSeen)
	}
}

func TestRenewRefusals(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	t.Run("revoked device", func(t *testing.T) {
		d := enroll(t, h, "pc-rv")
		if _, err := h.Admin(t, h.AdminToken).RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID, Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		_, err := d.Client.Renew(ctx, renewCSR(t, d))
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("CSR for another key", func(t *testing.T) {
		d := enroll(t, h, "pc-key")
		other, _ := pki.NewDeviceKey()
		csr, _ := pki.NewCSR(other, "pc-key")
		_, err := d.Client.Renew(ctx, &mamoriv1.RenewRequest{Csr: csr})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("malformed CSR", func(t *testing.T) {
		d := enroll(t, h, "pc-bad")
		for _, csr := range [][]byte{nil, []byte("not der"), make([]byte, 64<<10)} {
			_, err := d.Client.Renew(ctx, &mamoriv1.RenewRequest{Csr: csr})
			wantCode(t, err, codes.InvalidArgument)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		d := enroll(t, h, "pc-nocert")
		cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
		_, err := mamoriv1.NewAgentServiceClient(cc).Renew(ctx, renewCSR(t, d))
		wantCode(t, err, codes.Unauthenticated)
	})
	t.Run("certificate superseded by re-enrolment", func(t *testing.T) {
		first := enroll(t, h, "pc-sup")
		if _, _, err := h.Reenroll(t, h.Token(t, 1, 0), servertest.Facts("pc-sup", "machine-pc-sup"), first); err != nil {
			t.Fatal(err)
		}
		_, err := first.Client.Renew(ctx, renewCSR(t, first))
		wantCode(t, err, codes.Unauthenticated)
	})
}

// A renewal whose answer is lost (the agent was stopped before it saved
// the certificate) leaves the old certificate working, and the agent can
// renew again with it; the certificate it never saved is then dropped.
func TestRenewAnswerLost(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-lost")
	h.Clock.Advance(pki.DeviceValidity * 2 / 3)
	lost, err := d.Client.Renew(ctx, renewCSR(t, d))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Report(ctx, agentReport()); err != nil {
		t.Fatalf("old certificate after a renewal it never saved: %v", err)
	}
	again, err := d.Client.Renew(ctx, renewCSR(t, d))
	if err != nil {
		t.Fatalf("renew again with the old certificate: %v", err)
	}
	if _, err := client(t, h, tls.Certificate{Certificate: [][]byte{again.Certificate}, PrivateKey: d.Key}).Report(ctx, agentReport()); err != nil {
		t.Fatalf("second renewal's certificate: %v", err)
	}
	_, err = client(t, h, tls.Certificate{Certificate: [][]byte{lost.Certificate}, PrivateKey: d.Key}).Report(ctx, agentReport())
	wantCode(t, err, codes.Unauthenticated)
}

// A device renewing in a loop is refused past the per-machine burst with
// a retry hint (each renewal is a signature and an audit record).
func TestRenewRateLimited(t *testing.T) {
	lim := api.EnrollLimits{RenewRate: 0.001, RenewBurst: 3, RetryAfter: time.Second}
	h := servertest.Start(t, servertest.Options{EnrollLimits: &lim})
	d := enroll(t, h, "pc-loop")
	for i := range 3 {
		if _, err := d.Client.Renew(ctx, renewCSR(t, d)); err != nil {
			t.Fatalf("renewal %d: %v", i+1, err)
		}
	}
	_, err := d.Client.Renew(ctx, renewCSR(t, d))
	wantRetryHint(t, err, time.Second)
}
