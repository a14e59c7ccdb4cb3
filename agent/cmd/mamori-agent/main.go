// Command mamori-agent is the endpoint agent: it enforces the controls of a
// My Number tier terminal and reports them to mamori-server. main parses the
// command line, loads the config, builds the logger and wires the parts.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/kardianos/service"

	"github.com/mamori-dev/mamori/agent/cli"
	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/facts"
	"github.com/mamori-dev/mamori/agent/isolation"
	"github.com/mamori-dev/mamori/agent/localapi"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	"github.com/mamori-dev/mamori/agent/media"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/agent/svc"
	"github.com/mamori-dev/mamori/internal/buildinfo"
	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/tpm"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	p := i18n.NewPrinter(i18n.LangFromEnv(os.Getenv))
	inv, err := cli.Parse(args)
	switch {
	case errors.Is(err, cli.ErrUnknownCommand):
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgUnknownCommand, inv.Command))
		return 2
	case err != nil:
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgBadFlags, err))
		return 2
	}
	switch inv.Command {
	case "credprov-remove":
		if err := removeCredProv(); err != nil {
			fmt.Fprintln(stderr, p.Sprintf(cli.MsgServiceFailed, inv.Command, err))
			return 1
		}
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgServiceDone, inv.Command))
		return 0
	case "help":
		fmt.Fprint(stdout, p.Sprintf(cli.MsgUsage, config.DefaultPath, config.DefaultStateDir))
		return 0
	case "version":
		fmt.Fprintln(stdout, "mamori-agent", buildinfo.Version)
		return 0
	}
	cfg, err := config.Resolve(inv.ConfigPath, !inv.ConfigGiven, os.Getenv, inv.Overrides)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgConfig, err))
		reportStartError(inv, err)
		return 2
	}
	log, closeLog, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgConfig, err))
		reportStartError(inv, err)
		return 2
	}
	defer closeLog()

	switch inv.Command {
	case "enroll":
		return doEnroll(cfg, log, p, stdout, stderr)
	case "run":
		return doRun(cfg, inv, log, p, stderr)
	case "status":
		return doStatus(cfg, inv, p, stdout)
	case "media list":
		return doMediaList(cfg, p, stdout, stderr)
	case "isolation-boot":
		return doIsolationBoot(cfg, p, stdout, stderr)
	case "mfa pin-enroll", "mfa pin-remove":
		return doPIN(cfg, inv, p, os.Stdin, stdout, stderr, tpm.Open)
	default: // install, uninstall, start, stop
		s, err := service.New(&svc.Program{}, svc.Config(serviceArgs(inv)))
		if err == nil {
			err = service.Control(s, inv.Command)
		}
		if err != nil {
			fmt.Fprintln(stderr, p.Sprintf(cli.MsgServiceFailed, inv.Command, err))
			return 1
		}
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgServiceDone, inv.Command))
		return 0
	}
}

// doIsolationBoot puts the last isolation ruleset back in place; the
// mamori-isolation-boot unit runs it before network-pre.target.
func doIsolationBoot(cfg config.Config, p *i18n.Printer, stdout, stderr io.Writer) int {
	res, err := isolation.Boot(context.Background(), isolation.Options{StateDir: cfg.StateDir})
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgIsolationBootFailed, err))
		return 1
	}
	if res.Rules == 0 {
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgIsolationBootNone))
		return 0
	}
	fmt.Fprintln(stdout, p.Sprintf(cli.MsgIsolationBootDone, res.Rules, res.ForwardingOff))
	return 0
}

// startErrorText is why the agent could not start, in English and
// Japanese: the Event Log has no reader's language.
func startErrorText(err error) string {
	return i18n.NewPrinter(i18n.English).Sprintf(cli.MsgStartFailed, err) + "\n" +
		i18n.NewPrinter(i18n.Japanese).Sprintf(cli.MsgStartFailed, err)
}

// reportStartError: a service ("run") that cannot start says why in the
// Windows Event Log too, where stderr goes nowhere (a no-op elsewhere).
func reportStartError(inv cli.Invocation, err error) {
	if inv.Command == "run" {
		svc.ReportStartError(startErrorText(err)) //nolint:errcheck // stderr has it too
	}
}

// serviceArgs are the arguments the installed service runs with.
func serviceArgs(inv cli.Invocation) []string {
	a := []string{"run"}
	if p, err := filepath.Abs(inv.ConfigPath); err == nil {
		a = append(a, "--config", p)
	}
	if inv.Overrides.StateDir != "" {
		a = append(a, "--state-dir", inv.Overrides.StateDir)
	}
	return a
}

func doEnroll(cfg config.Config, log *slog.Logger, p *i18n.Printer, stdout, stderr io.Writer) int {
	ctx := context.Background()
	// The state directory is narrowed before a key is written into it.
	if err := state.Protect(cfg.StateDir); err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgEnrollFailed, err))
		return 1
	}
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgEnrollFailed, err))
		return 1
	}
	f, ferr := facts.Collect(ctx, facts.Options{Root: "/", AgentVersion: buildinfo.Version, KeyStorage: dir.KeyStorage()})
	if ferr != nil {
		log.Warn("some device facts are unreadable", "error", ferr)
	}
	res, err := enroll.Enroll(ctx, log, dir, enroll.Params{
		Servers: cfg.Servers, Token: cfg.Token, CAFingerprint: cfg.CAFingerprint, Facts: f,
	})
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgEnrollFailed, err))
		return 1
	}
	fmt.Fprintln(stdout, p.Sprintf(cli.MsgEnrolled, res.Identity.Device.DeviceID, res.Server, res.Policy.GetVersion()))
	return 0
}

func doRun(cfg config.Config, inv cli.Invocation, log *slog.Logger, p *i18n.Printer, stderr io.Writer) int {
	// The long-running agent only: GOGC and GOMEMLIMIT (footprint.go).
	tuneRuntime(os.Getenv)
	// Before anything is written there (device key, bundle, spool), and
	// on every start: an upgrade from an older install fixes what it left.
	if err := state.Protect(cfg.StateDir); err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		reportStartError(inv, err)
		return 1
	}
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		reportStartError(inv, err)
		return 1
	}
	// One agent per state directory: a second `run` refuses while the
	// first is alive (the lock goes with the process, however it ends).
	runLock, err := state.LockRun(cfg.StateDir)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		reportStartError(inv, err)
		return 1
	}
	defer runLock.Release()
	sp, err := spool.Open(filepath.Join(cfg.StateDir, "spool"), spool.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		reportStartError(inv, err)
		return 1
	}
	if c, ok := any(sp).(io.Closer); ok {
		defer c.Close()
	}
	dcfg := daemon.DefaultConfig()
	dcfg.State, dcfg.Spool, dcfg.Log, dcfg.Version = dir, sp, log, buildinfo.Version
	dcfg.Servers, dcfg.Token, dcfg.CAFingerprint = cfg.Servers, cfg.Token, cfg.CAFingerprint
	// Once enrolled, the token goes from /etc/default/mamori-agent (Linux)
	// and HKLM\SOFTWARE\mamori\Token (Windows).
	dcfg.ForgetToken = func() error { return config.ForgetToken(envFile()) }
	// Controls plug in here, each emitting through the durable spool.
	// The isolation control must always let the agent reach its servers:
	// the configured ones, else those recorded at enrolment.
	servers := cfg.Servers
	if id, err := dir.LoadIdentity(); len(servers) == 0 && err == nil {
		servers = id.Device.Servers
	}
	med := media.NewPlatform(media.Options{Emitter: daemon.NewEmitter(sp, nil), Log: log})
	defer med.Close()
	dcfg.Controls = append(dcfg.Controls,
		med,
		isolation.New(isolation.Options{Emitter: daemon.NewEmitter(sp, nil), Log: log, Servers: servers, StateDir: cfg.StateDir}),
	)
	// Login MFA: the verifier holds the sealed bundle; the local socket
	// (Linux) serves pam_mamori.so, the named pipe (Windows) mamori-cp.dll. If either fails, PAM denies (fail
	// closed) and the rest of the agent keeps running.
	deviceID := ""
	if id, err := dir.LoadIdentity(); err == nil {
		deviceID = id.Device.DeviceID
	}
	mcfg := mfa.DefaultConfig()
	// Logins are recorded from the spool's reserve on a full disk, and
	// refused when even that is gone (docs/mfa.md).
	mcfg.Dir, mcfg.Events, mcfg.Log = filepath.Join(cfg.StateDir, "mfa"), daemon.NewReservedEmitter(sp, nil), log
	// The TPM (its own handle: /dev/tpmrm0 and TBS virtualise) seals the
	// bundle key and holds the users' PIN keys; without one the bundle
	// key is sealed by a key file and PIN users are refused.
	mfaTPM, closeMFATPM := openMFATPM(log)
	defer closeMFATPM()
	if mfaTPM != nil {
		mcfg.Sealer = mfa.TPMSealer{TPM: mfaTPM}
	}
	mcfg.PINs = &mfa.PINKeys{Dir: filepath.Join(mcfg.Dir, "pin"), TPM: mfaTPM}
	// The login-mfa control checks (and in enforce mode switches on) the
	// PAM stack; it learns the enrolled users from the verifier, and
	// reports the verifier missing when it could not start.
	lopt := loginmfa.Options{Emitter: daemon.NewEmitter(sp, nil), Log: log}
	if verifier, err := mfa.Open(mcfg, deviceID); err != nil {
		log.Error("login MFA unavailable: logins through pam_mamori are refused", "error", err)
	} else {
		lopt.Users, lopt.GraceUsers, lopt.BundleVersion = verifier.Users, verifier.GraceUsers, verifier.BundleVersion
		dcfg.MFA = verifier
		// A clean stop: the next start charges no failures (agent/mfa
		// journal.go). Deferred first, so it runs after the socket stops.
		defer func() {
			if err := verifier.Close(); err != nil {
				log.Error("mfa state not closed cleanly", "error", err)
			}
		}()
		lapi := &localapi.Server{Path: localapi.DefaultSocket, Verifier: verifier, Log: log}
		// Screen lockers run PAM as the user: they may verify that user's
		// own code (rate-limited); Linux only.
		lapi.OwnUser = ownUser()
		lapi.AllowSIDs, lapi.PipeSDDL = pipeAccess()
		err := lapi.Start(context.Background())
		if errors.Is(err, localapi.ErrInUse) {
			// Another agent (another state directory) answers on the
			// socket: two agents would fight over the controls.
			fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
			reportStartError(inv, err)
			return 1
		}
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			log.Error("local socket unavailable: logins through pam_mamori are refused", "error", err)
			lopt.Users = nil // nothing answers pam_mamori.so: never enable it, report it
		} else if err == nil {
			defer lapi.Stop()
		}
	}
	// Windows: the control registers the credential provider, which asks
	// the verifier over the pipe lapi serves.
	lopt.CredProv = credProvOptions()
	dcfg.Controls = append(dcfg.Controls, loginmfa.New(lopt))
	// After each round, what it touched goes back (footprint.go).
	dcfg.OnRound = func(daemon.RoundResult) { afterRound() }
	d, err := daemon.New(dcfg)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		reportStartError(inv, err)
		return 1
	}
	exit := make(chan error, 1)
	prg := &svc.Program{Run: d.Run, Log: log, OnExit: func(err error) { exit <- err }}
	s, err := service.New(prg, svc.Config(serviceArgs(inv)))
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		return 1
	}
	log.Info("mamori-agent starting", "version", buildinfo.Version, "state_dir", cfg.StateDir, "servers", cfg.Servers)
	ran := make(chan error, 1)
	go func() { ran <- s.Run() }() // returns after Stop (signal or SCM)
	select {
	case err := <-ran:
		if err != nil {
			fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
			return 1
		}
		log.Info("mamori-agent stopped")
		return 0
	case err := <-exit:
		// Run ended on its own: exit non-zero so the service manager
		// restarts the agent.
		if err == nil {
			err = errors.New("agent loop ended")
		}
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		return 1
	}
}

func doStatus(cfg config.Config, inv cli.Invocation, p *i18n.Printer, stdout io.Writer) int {
	s, err := service.New(&svc.Program{}, svc.Config(serviceArgs(inv)))
	st := service.StatusUnknown
	if err == nil {
		st, err = s.Status()
	}
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgStatus, p.Sprintf(cli.MsgNotInstalled)))
	case st == service.StatusRunning:
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgStatus, p.Sprintf(cli.MsgStatusRunning)))
	case st == service.StatusStopped:
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgStatus, p.Sprintf(cli.MsgStatusStopped)))
	default:
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgStatus, p.Sprintf(cli.MsgStatusUnknown)))
	}
	rc := 0
	if st != service.StatusRunning {
		rc = 3 // LSB: program is not running
	}
	dir, err := state.Open(cfg.StateDir)
	var id *state.Identity
	if err == nil {
		id, err = dir.LoadIdentity()
	}
	if err != nil {
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgNotEnrolled, err))
		return rc
	}
	fmt.Fprintln(stdout, p.Sprintf(cli.MsgEnrolledAs, id.Device.DeviceID, strings.Join(id.Device.Servers, ", ")))
	fmt.Fprintln(stdout, cli.CertStatus(p, id.Cert, time.Now()))
	return rc
}

// newLogger logs text to stderr, or to cfg.LogFile when set.
func newLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	level, err := config.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	w, closer := stderr, func() {}
	if cfg.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o750); err != nil {
			return nil, nil, fmt.Errorf("log directory: %w", err)
		}
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		w, closer = f, func() { f.Close() }
	}
	// On Windows the service also logs to the Event Log (a no-op elsewhere).
	h, closeEventLog := svc.WithEventLog(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	return slog.New(h), func() { closeEventLog(); closer() }, nil
}

// doMediaList prints the removable devices present and what the cached
// policy does to each.
func doMediaList(cfg config.Config, p *i18n.Printer, stdout, stderr io.Writer) int {
	var settings map[string]string
	if dir, err := state.Open(cfg.StateDir); err == nil {
		if pol, err := dir.LoadPolicy(); err == nil {
			settings = pol.GetControls()[policy.ControlMedia].GetSettings()
		}
	}
	s, err := media.ParseSettings(settings)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgConfig, err))
		return 1
	}
	devs, err := media.List(media.Options{}, s)
	if err != nil {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgRunFailed, err))
		return 1
	}
	if err := media.WriteList(stdout, devs); err != nil {
		return 1
	}
	return 0
}

// openMFATPM opens the platform TPM for login MFA, or returns nil (logged)
// when there is none.
func openMFATPM(log *slog.Logger) (*mfa.TPM, func()) {
	t, err := tpm.Open()
	if err != nil {
		if !errors.Is(err, tpm.ErrNoTPM) {
			log.Warn("TPM unusable for login MFA: bundle key sealed by a key file, PIN logins refused", "error", err)
		}
		return nil, func() {}
	}
	return mfa.NewTPM(t), func() { t.Close() }
}

// doPIN enrols or removes a user's TPM-bound PIN on this terminal: a
// local, root-only action; the PIN is read twice without echo.
func doPIN(cfg config.Config, inv cli.Invocation, p *i18n.Printer, stdin *os.File, stdout, stderr io.Writer,
	openTPM func() (transport.TPMCloser, error)) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgMFAFailed, err))
		return 1
	}
	if !isAdmin() {
		return fail(errors.New("PIN keys are managed by root (Administrator) only"))
	}
	pins := &mfa.PINKeys{Dir: filepath.Join(cfg.StateDir, "mfa", "pin")}
	if inv.Command == "mfa pin-remove" {
		if err := pins.Remove(inv.User); err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, p.Sprintf(cli.MsgPINRemoved, inv.User, inv.User))
		return 0
	}
	t, err := openTPM()
	if err != nil {
		return fail(fmt.Errorf("a PIN needs this terminal's TPM: %w", err))
	}
	defer t.Close()
	pins.TPM = mfa.NewTPM(t)
	sr := cli.NewSecretReader(stdin)
	pin, err := sr.Read(stderr, p.Sprintf(cli.MsgPINPrompt, inv.User))
	if err != nil {
		return fail(err)
	}
	defer clear(pin)
	if err := mfa.ValidatePIN(string(pin)); err != nil {
		return fail(err)
	}
	again, err := sr.Read(stderr, p.Sprintf(cli.MsgPINAgain))
	if err != nil {
		return fail(err)
	}
	defer clear(again)
	if subtle.ConstantTimeCompare(pin, again) != 1 {
		fmt.Fprintln(stderr, p.Sprintf(cli.MsgPINMismatch))
		return 1
	}
	if err := pins.Enroll(inv.User, pin); err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, p.Sprintf(cli.MsgPINEnrolled, inv.User, inv.User))
	return 0
}
