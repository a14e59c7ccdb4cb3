package media

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

type fakeSessions []string

func (f *fakeSessions) Users(context.Context) ([]string, error) { return *f, nil }

// The phone in the captured tree (18d1:4ee1, MTP) is blocked by mtp=block;
// an exception for its serial allows it, records the use, and stops at its
// expiry without any server (the entry carries the expiry).
func TestExceptionAllowsUntilExpiry(t *testing.T) {
	m, rec, sys := fixture(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m.o.Now = func() time.Time { return now }
	users := fakeSessions{"tanaka"}
	m.o.Sessions = &users
	exc := []policy.Exception{{ID: "6f1c0e8e-0000-4000-8000-000000000001", Vendor: "18d1", Product: "4ee1",
		Serial: "98281FFAZ009SR", Expires: now.Add(time.Hour)}}
	p := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{
		"storage": "allow", "optical": "allow", "mtp": "block", policy.SettingExceptions: policy.FormatExceptions(exc)}}
	must(t, m.Apply(context.Background(), p))
	if got := authorizedOf(t, sys, "1-5:1.0"); got != "1" {
		t.Fatalf("phone under an exception: authorized=%s", got)
	}
	var used []recorded
	for _, e := range rec.events {
		if e.kind == KindExceptionUsed {
			used = append(used, e)
		}
	}
	if len(used) != 1 || used[0].attrs["exception_id"] != exc[0].ID || used[0].attrs["serial"] != "98281FFAZ009SR" ||
		used[0].attrs["user"] != "" {
		t.Fatalf("exception use events: %+v", used)
	}
	// The same round again: no second use event.
	must(t, m.Apply(context.Background(), p))
	if n := len(rec.devices(KindExceptionUsed)); n != 1 {
		t.Errorf("re-applied: %d use events", n)
	}
	// Offline past the expiry: the next round blocks it.
	now = now.Add(time.Hour + time.Second)
	must(t, m.Apply(context.Background(), p))
	if got := authorizedOf(t, sys, "1-5:1.0"); got != "0" {
		t.Errorf("expired exception still honoured: authorized=%s", got)
	}
}

func TestExceptionBoundToUser(t *testing.T) {
	m, rec, sys := fixture(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m.o.Now = func() time.Time { return now }
	users := fakeSessions{"suzuki"}
	m.o.Sessions = &users
	exc := []policy.Exception{{ID: "6f1c0e8e-0000-4000-8000-000000000002", Vendor: "18d1", Product: "4ee1",
		Serial: "98281FFAZ009SR", User: "tanaka", Expires: now.Add(time.Hour)}}
	p := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{
		"storage": "allow", "optical": "allow", "mtp": "block", policy.SettingExceptions: policy.FormatExceptions(exc)}}
	must(t, m.Apply(context.Background(), p))
	if got := authorizedOf(t, sys, "1-5:1.0"); got != "0" {
		t.Fatalf("tanaka not logged in, phone authorized=%s", got)
	}
	users = fakeSessions{"suzuki", "tanaka"}
	must(t, m.Apply(context.Background(), p))
	if got := authorizedOf(t, sys, "1-5:1.0"); got != "1" {
		t.Fatalf("tanaka logged in, phone authorized=%s", got)
	}
	var got []string
	for _, e := range rec.events {
		if e.kind == KindExceptionUsed {
			got = append(got, e.attrs["user"])
		}
	}
	if diff := cmp.Diff([]string{"tanaka"}, got); diff != "" {
		t.Errorf("use events' user (-want +got)\n%s", diff)
	}
}

func TestParseUtmp(t *testing.T) {
	rec := func(typ int16, user string) []byte {
		b := make([]byte, utmpSize)
		binary.LittleEndian.PutUint16(b[0:2], uint16(typ))
		copy(b[utmpUserOffset:], user)
		return b
	}
	var b []byte
	b = append(b, rec(2, "reboot")...)
	b = append(b, rec(utmpUserProcess, "tanaka")...)
	b = append(b, rec(8, "gone")...)
	b = append(b, rec(utmpUserProcess, "suzuki")...)
	b = append(b, rec(utmpUserProcess, "tanaka")...)
	b = append(b, rec(utmpUserProcess, "<script>")...)
	got, err := ParseUtmp(b)
	must(t, err)
	if diff := cmp.Diff([]string{"suzuki", "tanaka"}, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if _, err := ParseUtmp(b[:100]); err == nil {
		t.Error("a torn record was accepted")
	}
}

func FuzzParseUtmp(f *testing.F) {
	f.Add(make([]byte, utmpSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := ParseUtmp(b)
		if err == nil && len(users) > len(b)/utmpSize {
			t.Fatalf("%d users from %d records", len(users), len(b)/utmpSize)
		}
	})
}
