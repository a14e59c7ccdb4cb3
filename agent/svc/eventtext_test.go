package svc

import (
	"log/slog"
	"testing"
	"time"
)

func TestEventText(t *testing.T) {
	r := slog.NewRecord(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), slog.LevelWarn, "policy drift re-applied", 0)
	r.AddAttrs(slog.String("value", `HKLM\SYSTEM\x`), slog.Int("count", 2))
	got := eventText(r)
	want := `msg="policy drift re-applied" value=HKLM\SYSTEM\x count=2`
	if got != want {
		t.Errorf("eventText = %q, want %q", got, want)
	}
}
