package mfa

import (
	"fmt"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/server/store"
)

// BenchmarkBundle: building and sealing one device's bundle for 1,000
// enrolled users, 100 live temporary codes and 100 unlock counters — what
// a report costs when the device's bundle is stale. Reports with a
// current bundle cost one cached read of the generation instead.
func BenchmarkBundle(b *testing.B) {
	k, err := NewKey(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var d BundleData
	for i := range 1000 {
		e, err := k.Enroll(fmt.Sprintf("user%04d", i), "op", now)
		if err != nil {
			b.Fatal(err)
		}
		d.Users = append(d.Users, e.Record)
	}
	for i := range 100 {
		_, c, err := NewTempCode(fmt.Sprintf("user%04d", i), "op", now, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		d.TempCodes = append(d.TempCodes, c)
		d.Unlocks = append(d.Unlocks, store.MFAUnlock{User: c.User, Generation: 1})
	}
	dk, _ := mfabundle.GenerateKey()
	pub := mfabundle.PublicKeyBytes(dk)
	p := policy.Default()
	// Every user: since issue #14 the default names nobody.
	p.Controls[policy.ControlLoginMFA].Settings = map[string]string{SettingUsers: "*"}
	for i := range 1000 { // every user logged in somewhere (issue #14 item 9)
		d.Logins = append(d.Logins, store.MFALoginState{User: fmt.Sprintf("user%04d", i), DeviceID: "dev-2", LastStep: 59000000 + int64(i), Failures: 1})
	}
	var size int
	b.ResetTimer()
	for b.Loop() {
		sb, err := k.Bundle(d, p, "g1.p1", "dev-1", pub, now)
		if err != nil {
			b.Fatal(err)
		}
		size = len(sb.Sealed)
	}
	b.ReportMetric(float64(size), "sealed-bytes")
}
