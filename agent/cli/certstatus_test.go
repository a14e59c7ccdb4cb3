package cli

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
)

func TestCertStatus(t *testing.T) {
	for _, id := range []i18n.ID{MsgCertValid, MsgCertRenewDue, MsgCertExpired} {
		if _, ok := i18n.Default().Lookup(id); !ok {
			t.Errorf("%s is not in internal/i18n", id)
		}
	}
	t.Setenv("TZ", "UTC")
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: from, NotAfter: from.Add(3 * 24 * time.Hour)}
	tests := []struct {
		name string
		now  time.Time
		lang i18n.Lang
		want []string
	}{
		{"valid", from.Add(time.Hour), i18n.English, []string{"valid until", "renewed automatically from 2026-01-03"}},
		{"due", from.Add(50 * time.Hour), i18n.English, []string{"renewal is due"}},
		{"expired", from.Add(73 * time.Hour), i18n.English, []string{"CERTIFICATE EXPIRED", "new enrolment token", "mamori-agent enroll --token"}},
		{"expired ja", from.Add(73 * time.Hour), i18n.Japanese, []string{"有効期限が切れています", "登録トークン"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CertStatus(i18n.NewPrinter(tc.lang), cert, tc.now)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}
