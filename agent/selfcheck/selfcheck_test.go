package selfcheck

import (
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
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
			c := New(Config{Version: "v9", Backlog: func() int { return 7 }})
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
