package svc

import (
	"context"
	"log/slog"
	"strings"
)

// eventText renders a record for the Windows event log: slog's text
// format without time and level (the event log records both).
func eventText(r slog.Record) string {
	var b strings.Builder
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		return a
	}})
	h.Handle(context.Background(), r) //nolint:errcheck // strings.Builder does not fail
	return strings.TrimSpace(b.String())
}
