package selfcheck

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestSkewMidpoint(t *testing.T) {
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	skew, rtt := Skew(sent, sent.Add(2*time.Second), sent.Add(61*time.Second))
	if skew != 60*time.Second || rtt != 2*time.Second {
		t.Errorf("skew %v rtt %v, want 60s 2s", skew, rtt)
	}
}

func TestStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		version    int64
		skew       time.Duration // server ahead by
		measure    bool
		settings   map[string]string
		want       mamoriv1.ControlState
		wantDetail string
	}{
		{"ok", 3, 5 * time.Second, true, nil, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "policy v3"},
		{"not measured yet", 3, 0, false, nil, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "policy v3"},
		{"skew too large", 3, 61 * time.Second, true, nil, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "check NTP"},
		{"skew negative", 3, -90 * time.Second, true, nil, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "1m30s off"},
		{"custom limit", 3, 61 * time.Second, true, map[string]string{"max_clock_skew": "2m"}, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"tight limit", 3, 5 * time.Second, true, map[string]string{"max_clock_skew": "1s"}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "allowed 1s"},
		{"bad setting", 3, 0, true, map[string]string{"max_clock_skew": "soon"}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "not a positive duration"},
		{"no policy", 0, 0, true, nil, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "no policy loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{Version: "v9", Spool: &fakeSpool{st: healthySpool(7)}})
			c.SetPolicyVersion(tt.version)
			if err := c.Apply(t.Context(), &mamoriv1.ControlPolicy{Settings: tt.settings}); err != nil {
				t.Fatal(err)
			}
			if tt.measure {
				c.ObserveServerTime(t0, t0.Add(100*time.Millisecond), t0.Add(50*time.Millisecond+tt.skew))
			}
			st, err := c.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.want || !strings.Contains(st.Detail, tt.wantDetail) {
				t.Errorf("got %v %q, want %v containing %q", st.State, st.Detail, tt.want, tt.wantDetail)
			}
			// Every detail is a message of the catalogue; its English
			// text is the detail.
			if !strings.HasPrefix(st.DetailId, "detail.agent.") {
				t.Errorf("detail_id %q", st.DetailId)
			}
			if en := control.D(i18n.ID(st.DetailId), st.DetailArgs...).English(); en != st.Detail {
				t.Errorf("detail %q, its message in English %q", st.Detail, en)
			}
			if st.Evidence["agent_version"] != "v9" || st.Evidence["spool_backlog"] != "7" || st.Evidence["clock_skew_ms"] == "" {
				t.Errorf("evidence %v", st.Evidence)
			}
		})
	}
}

func TestRequireTPMKey(t *testing.T) {
	tests := []struct {
		name     string
		storage  string
		settings map[string]string
		want     mamoriv1.ControlState
		detail   string
	}{
		{"not required, file", "file", nil, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"required, tpm", "tpm", map[string]string{"require_tpm_key": "true"}, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, ""},
		{"required, file", "file", map[string]string{"require_tpm_key": "true"}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "requires the device key in a TPM"},
		{"bad value is strict", "file", map[string]string{"require_tpm_key": "yes please"}, mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "requires the device key in a TPM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{Version: "v1", KeyStorage: func() string { return tt.storage }})
			c.SetPolicyVersion(1)
			if err := c.Apply(t.Context(), &mamoriv1.ControlPolicy{Settings: tt.settings}); err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.want || !strings.Contains(st.Detail, tt.detail) || st.Evidence["key_storage"] != tt.storage {
				t.Errorf("state %v detail %q evidence %v; want %v containing %q", st.State, st.Detail, st.Evidence, tt.want, tt.detail)
			}
		})
	}
}

type fakeSpool struct {
	st           spool.Stats
	maxBytes     int64
	maxRecords   int
	setLimitsErr error
}

func (f *fakeSpool) Stats() spool.Stats { return f.st }
func (f *fakeSpool) SetLimits(b int64, r int) error {
	f.maxBytes, f.maxRecords = b, r
	return f.setLimitsErr
}

func healthySpool(backlog int) spool.Stats {
	return spool.Stats{Backlog: backlog, MaxBytes: 64 << 20, MaxRecords: 100_000, FreeBytes: 10 << 30, ReserveBytes: spool.ReserveSize}
}

// TestSpoolStatus: a spool that loses nothing is ENFORCED; refused events
// not yet reported, or a full file system, DEGRADED; evidence older than
// spool_max_unsent_age not yet at the server, FAILED; the size settings
// reach the spool, and bad ones are named.
func TestSpoolStatus(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	with := func(f func(*spool.Stats)) spool.Stats {
		st := healthySpool(3)
		st.Oldest = now.Add(-time.Minute)
		f(&st)
		return st
	}
	tests := []struct {
		name     string
		st       spool.Stats
		settings map[string]string
		limitErr error
		want     mamoriv1.ControlState
		detail   string
		evidence map[string]string
	}{
		{"healthy", with(func(*spool.Stats) {}), nil, nil, mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "policy v1",
			map[string]string{"spool_backlog": "3", "spool_oldest_unsent_age": "1m0s", "spool_dropped_unreported": "0", "spool_max_unsent_age": "72h0m0s"}},
		{"drops not yet reported", with(func(s *spool.Stats) { s.Dropped, s.DroppedDiskFull, s.LastDrop = 744, 744, now }), nil, nil,
			mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "744 events could not be recorded", map[string]string{"spool_dropped_unreported": "744"}},
		{"disk full", with(func(s *spool.Stats) { s.FreeBytes, s.ReserveBytes = 0, 4096 }), nil, nil,
			mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "disk under the agent's event spool is full", map[string]string{"spool_free_bytes": "0", "spool_reserve_bytes": "4096"}},
		{"stale evidence", with(func(s *spool.Stats) { s.Oldest = now.Add(-80 * time.Hour) }), nil, nil,
			mamoriv1.ControlState_CONTROL_STATE_FAILED, "80h0m0s old (allowed 72h0m0s)", nil},
		{"stale by the policy's age", with(func(s *spool.Stats) { s.Oldest = now.Add(-2 * time.Hour) }), map[string]string{"spool_max_unsent_age": "1h"}, nil,
			mamoriv1.ControlState_CONTROL_STATE_FAILED, "allowed 1h0m0s", nil},
		{"bad settings named", with(func(*spool.Stats) {}), map[string]string{"spool_max_bytes": "1KiB", "spool_max_records": "many", "spool_max_unsent_age": "1s"}, nil,
			mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "spool_max_bytes", nil},
		{"spool refuses the limits", with(func(*spool.Stats) {}), map[string]string{"spool_max_bytes": "1MiB"}, errors.New("nope"), mamoriv1.ControlState_CONTROL_STATE_DEGRADED, "nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSpool{st: tt.st, setLimitsErr: tt.limitErr}
			c := New(Config{Version: "v1", Spool: f, Now: func() time.Time { return now }})
			c.SetPolicyVersion(1)
			if err := c.Apply(t.Context(), &mamoriv1.ControlPolicy{Settings: tt.settings}); err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tt.want || !strings.Contains(st.Detail, tt.detail) {
				t.Errorf("got %v %q, want %v containing %q", st.State, st.Detail, tt.want, tt.detail)
			}
			for k, v := range tt.evidence {
				if st.Evidence[k] != v {
					t.Errorf("evidence %s = %q, want %q (all: %v)", k, st.Evidence[k], v, st.Evidence)
				}
			}
			if en := control.D(i18n.ID(st.DetailId), st.DetailArgs...).English(); en != st.Detail {
				t.Errorf("detail %q, its message in English %q", st.Detail, en)
			}
		})
	}
	t.Run("limits reach the spool", func(t *testing.T) {
		f := &fakeSpool{st: healthySpool(0)}
		c := New(Config{Version: "v1", Spool: f})
		if err := c.Apply(t.Context(), &mamoriv1.ControlPolicy{Settings: map[string]string{"spool_max_bytes": "256MiB", "spool_max_records": "500000"}}); err != nil {
			t.Fatal(err)
		}
		if f.maxBytes != 256<<20 || f.maxRecords != 500000 {
			t.Errorf("spool limits %d, %d", f.maxBytes, f.maxRecords)
		}
	})
}

func FuzzSpoolLimitsFrom(f *testing.F) {
	for _, s := range []string{"64MiB", "131072", "1GiB", "-1", "9999999999999999999GiB", "1KiB", ""} {
		f.Add(s, "100", "72h")
	}
	f.Fuzz(func(t *testing.T, b, r, age string) {
		l, err := SpoolLimitsFrom(map[string]string{SettingSpoolMaxBytes: b, SettingSpoolMaxRecords: r, SettingSpoolMaxUnsentAge: age})
		if l.MaxBytes != 0 && (l.MaxBytes < 128<<10 || l.MaxBytes > maxSpoolBytesSetting) {
			t.Fatalf("%q accepted as %d bytes", b, l.MaxBytes)
		}
		if l.MaxRecords != 0 && (l.MaxRecords < 16 || l.MaxRecords > maxSpoolRecordsSetting) {
			t.Fatalf("%q accepted as %d records", r, l.MaxRecords)
		}
		if l.MaxUnsentAge < time.Minute {
			t.Fatalf("age %v", l.MaxUnsentAge)
		}
		if err == nil && (l.MaxBytes == 0 || l.MaxRecords == 0) {
			t.Fatalf("no error for %q %q", b, r)
		}
	})
}

// TestSpoolDropSeenOnce: a drop already reported by its marker still makes
// the next status DEGRADED once, then no more.
func TestSpoolDropSeenOnce(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := healthySpool(0)
	st.LastDrop, st.DroppedSinceOpen = now.Add(-time.Second), 5
	c := New(Config{Version: "v1", Spool: &fakeSpool{st: st}, Now: func() time.Time { return now }})
	c.SetPolicyVersion(1)
	for i, want := range []mamoriv1.ControlState{mamoriv1.ControlState_CONTROL_STATE_DEGRADED, mamoriv1.ControlState_CONTROL_STATE_ENFORCED} {
		got, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got.State != want {
			t.Errorf("status %d: %v %q, want %v", i, got.State, got.Detail, want)
		}
		now = now.Add(time.Minute)
	}
}
