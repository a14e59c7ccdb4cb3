package svc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/kardianos/service"
	"golang.org/x/sys/windows"
	winsvc "golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// Recovery is what the service control manager does when the agent dies
// or exits non-zero: restart it after 5 s, three times, the count reset
// after a day. `mamori-agent install` sets it through kardianos; an MSI
// install cannot (wixl has no ServiceConfig), so the agent sets it itself
// on every start.
var Recovery = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
}

// RecoveryResetPeriod resets the failure count (seconds).
const RecoveryResetPeriod = 86400

// platformStart runs when the service starts on Windows.
func (p *Program) platformStart(s service.Service) {
	if s == nil {
		return // a unit test driving Program directly
	}
	if err := SetRecovery(); err != nil && p.Log != nil && !service.Interactive() {
		p.Log.Warn("could not set the service's restart-on-failure actions", "error", err)
	}
	// kardianos decides "service or console" once, with
	// svc.IsWindowsService. Under wine's services.exe that says "console",
	// so kardianos never connects to the SCM and the start times out
	// (error 1053). When the parent process is services.exe anyway, run
	// the SCM side here.
	if service.Interactive() && parentIsServices() {
		go p.serveSCM()
	}
}

// SetRecovery sets Recovery on the installed service. It needs
// SERVICE_CHANGE_CONFIG (LocalSystem or an administrator).
func SetRecovery() error {
	m, err := mgr.Connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.SetRecoveryActions(Recovery, RecoveryResetPeriod); err != nil {
		return err
	}
	// Exiting non-zero after reporting "stopped" counts as a failure too.
	return s.SetRecoveryActionsOnNonCrashFailures(true)
}

// parentIsServices reports whether the parent process is services.exe.
func parentIsServices() bool {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return false
	}
	defer windows.CloseHandle(snap)
	var e windows.ProcessEntry32
	e.Size = uint32(unsafe.Sizeof(e))
	ppid := uint32(os.Getppid())
	for err = windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		if e.ProcessID == ppid {
			return strings.EqualFold(windows.UTF16ToString(e.ExeFile[:]), "services.exe")
		}
	}
	return false
}

// serveSCM talks to the SCM for a Program kardianos already started: it
// reports "running", and on stop or shutdown stops the Program and exits
// the process (kardianos' console loop waits for a Ctrl-C that a service
// never gets).
func (p *Program) serveSCM() {
	err := winsvc.Run(Name, scmHandler{p})
	if err != nil && p.Log != nil {
		p.Log.Error("service control manager connection failed", "error", err)
		return
	}
	os.Exit(0)
}

type scmHandler struct{ p *Program }

func (h scmHandler) Execute(_ []string, r <-chan winsvc.ChangeRequest, changes chan<- winsvc.Status) (bool, uint32) {
	changes <- winsvc.Status{State: winsvc.Running, Accepts: winsvc.AcceptStop | winsvc.AcceptShutdown}
	for c := range r {
		switch c.Cmd {
		case winsvc.Interrogate:
			changes <- c.CurrentStatus
		case winsvc.Stop, winsvc.Shutdown:
			changes <- winsvc.Status{State: winsvc.StopPending}
			if err := h.p.Stop(nil); err != nil {
				return false, 1
			}
			return false, 0
		}
	}
	return false, 0
}

// EventSource is the Event Log source the agent writes as (Application
// log). The MSI registers it with EventCreate.exe as message file, so
// messages show without "description not found".
const EventSource = Name

// ReportStartError writes why the agent could not start to the
// Application event log (source EventSource), before any logger exists:
// a configuration error at service start (bad SERVER, TOKEN, config
// file) is then readable on the terminal, e.g. after msiexec reported
// 1603 or 1920 on a fleet.
func ReportStartError(msg string) error {
	l, err := eventlog.Open(EventSource)
	if err != nil {
		return err
	}
	defer l.Close()
	return l.Error(2, msg)
}

// WithEventLog returns a handler that writes every record to h and also
// to the Windows Application event log (source EventSource), as
// "message key=value …" with the level mapped to error/warning/info. The
// returned func closes the event log. If the event log cannot be opened,
// h is returned alone.
func WithEventLog(h slog.Handler) (slog.Handler, func()) {
	l, err := eventlog.Open(EventSource)
	if err != nil {
		return h, func() {}
	}
	return &eventHandler{next: h, log: l, text: eventText}, func() { l.Close() }
}

type eventHandler struct {
	next slog.Handler
	log  *eventlog.Log
	text func(slog.Record) string
	with []slog.Attr
}

func (e *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return e.next.Enabled(ctx, l)
}

func (e *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	err := e.next.Handle(ctx, r)
	r2 := r.Clone()
	r2.AddAttrs(e.with...)
	msg := e.text(r2)
	var lerr error
	switch {
	case r.Level >= slog.LevelError:
		lerr = e.log.Error(1, msg)
	case r.Level >= slog.LevelWarn:
		lerr = e.log.Warning(1, msg)
	default:
		lerr = e.log.Info(1, msg)
	}
	return errors.Join(err, lerr)
}

func (e *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{next: e.next.WithAttrs(as), log: e.log, text: e.text, with: append(e.with[:len(e.with):len(e.with)], as...)}
}

// WithGroup keeps groups for the file log only; the event log gets flat
// attributes.
func (e *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{next: e.next.WithGroup(name), log: e.log, text: e.text, with: e.with}
}
