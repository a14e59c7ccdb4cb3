//go:build !windows

package svc

import (
	"log/slog"

	"github.com/kardianos/service"
)

// platformStart has nothing to do outside Windows: systemd restarts the
// agent (Restart=on-failure in the unit).
func (p *Program) platformStart(service.Service) {}

// WithEventLog returns h unchanged outside Windows (the journal already
// collects the agent's stderr).
func WithEventLog(h slog.Handler) (slog.Handler, func()) { return h, func() {} }

// ReportStartError has nowhere to go but stderr outside Windows (the
// journal collects it).
func ReportStartError(string) error { return nil }
