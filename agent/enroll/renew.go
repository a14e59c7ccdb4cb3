package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// RenewAfter is the share of a certificate's lifetime after which the
// agent renews it: with the two-year device certificate, after 16 months,
// leaving 8 months for a terminal that is switched off or cut off to come
// back and renew before the certificate expires.
const RenewAfter = 2.0 / 3

// ErrCertExpired means the device certificate has expired: the server
// refuses it, and it cannot be renewed. Its text says what to do.
var ErrCertExpired = errors.New("the device certificate has expired: the server refuses it and it cannot be renewed; " +
	"ask the helpdesk for a new enrolment token and run mamori-agent enroll --token TOKEN (the device record is kept)")

// RenewDue reports whether cert is past RenewAfter of its lifetime at now.
func RenewDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(time.Duration(float64(life) * RenewAfter)))
}

// Expired returns an error wrapping ErrCertExpired when cert has expired
// at now, else nil.
func Expired(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%w (expired %s)", ErrCertExpired, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Renew asks the server, over client (a connection that presents id's
// certificate), for a new certificate for the same key, checks it against
// the pinned CA and saves it (state.SaveCertificate: one atomic rename).
// The old certificate stays valid on the server until it expires, so an
// agent stopped at any point keeps a working identity.
func Renew(ctx context.Context, client mamoriv1.AgentServiceClient, dir *state.Dir, id *state.Identity, now time.Time) (*state.Identity, error) {
	if err := Expired(id.Cert, now); err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(id.Key, id.Cert.Subject.CommonName)
	if err != nil {
		return nil, fmt.Errorf("make renewal request: %w", err)
	}
	resp, err := client.Renew(ctx, &mamoriv1.RenewRequest{Csr: csr})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return nil, fmt.Errorf("the server does not renew certificates yet (upgrade mamori-server): %w", err)
		}
		return nil, fmt.Errorf("renew device certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return nil, fmt.Errorf("server gave an unusable renewal: %w; keeping the current certificate", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: pool(id.CA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now,
	}); err != nil {
		return nil, fmt.Errorf("renewed certificate does not verify against the pinned CA: %w; keeping the current certificate", err)
	}
	if !cert.NotAfter.After(id.Cert.NotAfter) {
		return nil, fmt.Errorf("renewed certificate ends %s, not after the current one (%s); keeping the current certificate",
			cert.NotAfter.UTC().Format(time.RFC3339), id.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return dir.SaveCertificate(id, cert)
}
