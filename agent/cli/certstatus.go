package cli

import (
	"crypto/x509"
	"time"

	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/internal/i18n"
)

// CertStatus is the line `mamori-agent status` prints about the device
// certificate: valid (and when it renews), due for renewal, or expired
// with what to do.
func CertStatus(p *i18n.Printer, cert *x509.Certificate, now time.Time) string {
	const layout = "2006-01-02 15:04 MST"
	end := cert.NotAfter.Local().Format(layout)
	switch {
	case enroll.Expired(cert, now) != nil:
		return p.Sprintf(MsgCertExpired, end)
	case enroll.RenewDue(cert, now):
		return p.Sprintf(MsgCertRenewDue, end)
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	from := cert.NotBefore.Add(time.Duration(float64(life) * enroll.RenewAfter)).Local().Format(layout)
	return p.Sprintf(MsgCertValid, end, from)
}
