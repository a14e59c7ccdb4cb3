package exception

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

var now = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func TestNew(t *testing.T) {
	ok := Request{USB: "0781:5581:4C53", DeviceID: "d1", Reason: "理由", ExpiresAt: now.Add(time.Hour), Actor: "op"}
	e, err := New(ok, now)
	if err != nil || e.ID == "" || e.Vendor != "0781" || e.Serial != "4C53" || e.CreatedBy != "op" {
		t.Fatalf("New = %+v, %v", e, err)
	}
	for name, mod := range map[string]func(r *Request){
		"wildcard":          func(r *Request) { r.USB = "0781:5581:*" },
		"both targets":      func(r *Request) { r.Group = "市民課" },
		"no target":         func(r *Request) { r.DeviceID = "" },
		"bad group":         func(r *Request) { r.DeviceID, r.Group = "", "課\u202e" },
		"no reason":         func(r *Request) { r.Reason = "  " },
		"control in reason": func(r *Request) { r.Reason = "a\x1bb" },
		"long reason":       func(r *Request) { r.Reason = strings.Repeat("x", MaxReasonLength+1) },
		"no expiry":         func(r *Request) { r.ExpiresAt = time.Time{} },
		"too soon":          func(r *Request) { r.ExpiresAt = now.Add(30 * time.Second) },
		"too late":          func(r *Request) { r.ExpiresAt = now.Add(MaxDuration + time.Minute) },
		"bad user":          func(r *Request) { r.User = "a b" },
	} {
		t.Run(name, func(t *testing.T) {
			r := ok
			mod(&r)
			if _, err := New(r, now); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestForAndEffective(t *testing.T) {
	all := []store.Exception{
		{ID: "own", Vendor: "0781", Product: "5581", Serial: "A", DeviceID: "d1", ExpiresAt: now.Add(time.Hour)},
		{ID: "grp", Vendor: "0781", Product: "5581", Serial: "B", Group: "市民課", ExpiresAt: now.Add(time.Hour)},
		{ID: "other", Vendor: "0781", Product: "5581", Serial: "C", DeviceID: "d2", ExpiresAt: now.Add(time.Hour)},
		{ID: "expired", Vendor: "0781", Product: "5581", Serial: "D", DeviceID: "d1", ExpiresAt: now},
		{ID: "revoked", Vendor: "0781", Product: "5581", Serial: "E", DeviceID: "d1", ExpiresAt: now.Add(time.Hour), RevokedAt: now},
	}
	var ids []string
	for _, e := range For(all, "d1", "市民課", now) {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "own,grp" {
		t.Errorf("For = %v", ids)
	}
	base := policy.Default()
	base.Controls[policy.ControlMedia].Mode = mamoriv1.Mode_MODE_ENFORCE
	if NeedsGroup(base, all[:1]) || !NeedsGroup(base, all) {
		t.Error("NeedsGroup")
	}
	eff := Effective(base, all, "d1", "市民課", now)
	if got := eff.Controls[policy.ControlMedia].Settings[policy.SettingExceptions]; !strings.Contains(got, "grp 0781:5581:B") || !strings.Contains(got, "own 0781:5581:A") {
		t.Errorf("exceptions setting %q", got)
	}
}
