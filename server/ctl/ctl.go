// Package ctl is mamorictl, the helpdesk's command-line tool: it lists
// devices and their compliance, shows one device with every control and its
// evidence, creates enrolment tokens, revokes devices and reads and sets the
// policy, all over AdminService with an operator API token.
//
// Everything a person reads goes through internal/i18n (Japanese when LANG
// starts with "ja"). Tables are for people; "-o json" is for scripts and is
// never localized.
//
// The main package only calls Run; tests call RunOptions in-process against
// a live gRPC server (see ctltest).
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the server refused or could not be reached
	ExitUsage = 2 // bad command line, bad input file, bad local configuration

	// DefaultTimeout is how long each call waits for the server.
	DefaultTimeout = 10 * time.Second
)

// Options are what Run takes from its surroundings. Zero fields get the
// production value.
type Options struct {
	Stdin  io.Reader // for "policy set -"; os.Stdin when nil
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (MAMORI_*, LANG); os.Getenv when nil.
	Getenv func(string) string
	// Now is the clock for relative times ("3m ago"); time.Now when nil.
	Now func() time.Time
	// Location is the time zone of times in tables; time.Local when nil.
	Location *time.Location
}

// Run runs mamorictl with args (without the program name) and returns the
// exit code: 0 success, 1 a server error, 2 a usage error.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return RunOptions(ctx, args, Options{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv})
}

// RunOptions is Run with every dependency explicit; tests use it to fix
// the clock and the time zone.
func RunOptions(ctx context.Context, args []string, o Options) int {
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	c := &cli{o: o, p: i18n.NewPrinter(i18n.LangFromEnv(o.Getenv))}
	c.g.timeout = DefaultTimeout
	err := c.run(ctx, args)
	var he helpRequest
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &he):
		fmt.Fprint(o.Stdout, c.help(ctx, he))
		return ExitOK
	}
	fmt.Fprintf(o.Stderr, "mamorictl: %s\n", sanitizeText(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		if ue.cmd != "" {
			fmt.Fprintln(o.Stderr, c.p.Sprintf("ctl.hint.help", ue.cmd))
		}
		return ExitUsage
	}
	return ExitError
}

// cli is one run of mamorictl.
type cli struct {
	o Options
	p *i18n.Printer
	g globals
}

// globals are the connection flags, accepted before or after the command.
type globals struct {
	server, caFile, caFingerprint string
	token                         secret
	timeout                       time.Duration
}

// usageError is a mistake on the command line or in local input: exit 2.
type usageError struct {
	cmd string // for the "run mamorictl CMD -h" hint; may be empty
	msg string
}

func (e usageError) Error() string { return e.msg }

// helpRequest asks Run to print the help of cmd and exit 0.
type helpRequest struct {
	cmd string
	fs  *flag.FlagSet // the command's flags; nil for general help
}

func (helpRequest) Error() string { return "help requested" }

func (c *cli) usage(cmd string, id i18n.ID, args ...any) error {
	return usageError{cmd: cmd, msg: c.p.Sprintf(id, args...)}
}

func (c *cli) run(ctx context.Context, args []string) error {
	fs := c.newFlagSet("")
	if err := fs.Parse(args); err != nil {
		return c.flagError(fs, "", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return c.usage("", "ctl.err.no-command")
	}
	cmd, rest := rest[0], rest[1:]
	sub := func() (string, []string) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return "", rest
		}
		return rest[0], rest[1:]
	}
	// Commands with subcommands: "device show", "token create", …
	groups := map[string][]struct {
		name string
		run  func(context.Context, []string) error
	}{
		"device": {{"show", c.deviceShow}, {"revoke", c.deviceRevoke}, {"set-group", c.deviceSetGroup},
			{"approve-reenrolment", c.deviceApproveReenrollment}},
		// TPM endorsement keys an officer approved (tpm.go).
		"tpm":   {{"approve-ek", c.tpmApproveEK}, {"list-eks", c.tpmListEKs}},
		"token": {{"create", c.tokenCreate}},
		// Operator API tokens (apitoken.go).
		"api-token": {{"create", c.apiTokenCreate}, {"list", c.apiTokenList}, {"revoke", c.apiTokenRevoke}},
		"policy":    {{"get", c.policyGet}, {"set", c.policySet}},
		"audit":     {{"verify", c.auditVerify}},
		"mfa": {{"enroll", c.mfaEnroll}, {"import", c.mfaImport}, {"reset", c.mfaReset}, {"unlock", c.mfaUnlock},
			{"temp-code", c.mfaTempCode}, {"list", c.mfaList}, {"access", c.mfaAccess}},
		// Exceptions and the asset ledger (exception.go).
		"exception": {{"create", c.exceptionCreate}, {"list", c.exceptionList}, {"revoke", c.exceptionRevoke}},
		"ledger":    {{"import", c.ledgerImport}, {"list", c.ledgerList}},
	}
	if subs, ok := groups[cmd]; ok {
		s, r := sub()
		names := make([]string, len(subs))
		for i, sc := range subs {
			if sc.name == s {
				return sc.run(ctx, r)
			}
			names[i] = sc.name
		}
		if s == "" && hasHelp(r) {
			return helpRequest{cmd: cmd}
		}
		return c.usage(cmd, "ctl.err.unknown-subcommand", cmd, s, strings.Join(names, ", "))
	}
	switch cmd {
	case "help":
		if len(rest) == 0 || rest[0] == "help" || strings.HasPrefix(rest[0], "-") {
			return helpRequest{}
		}
		// "help device show" is "device show -h".
		err := c.run(ctx, append(append([]string{}, rest...), "-h"))
		var he helpRequest
		if errors.As(err, &he) {
			return err
		}
		return c.usage("", "ctl.err.unknown-command", strings.Join(rest, " "))
	case "version":
		return c.version(rest)
	case "devices":
		return c.devices(ctx, rest)
	case "fleet":
		return c.fleet(ctx, rest)
	case "events":
		return c.events(ctx, rest)
	}
	return c.usage("", "ctl.err.unknown-command", cmd)
}

func hasHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

func (c *cli) version(args []string) error {
	fs := c.newFlagSet("version")
	if _, err := c.parse(fs, "version", args, 0); err != nil {
		return err
	}
	fmt.Fprintf(c.o.Stdout, "mamorictl %s\n", buildVersion())
	return nil
}

// newFlagSet makes a flag set for cmd with the connection flags. Usage
// strings are message IDs, printed through the catalog by help.
func (c *cli) newFlagSet(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.g.server, "server", c.g.server, "ctl.flag.server")
	fs.StringVar(&c.g.caFile, "ca-file", c.g.caFile, "ctl.flag.ca-file")
	fs.StringVar(&c.g.caFingerprint, "ca-fingerprint", c.g.caFingerprint, "ctl.flag.ca-fingerprint")
	fs.Var(&c.g.token, "token", "ctl.flag.token")
	fs.DurationVar(&c.g.timeout, "timeout", c.g.timeout, "ctl.flag.timeout")
	return fs
}

// parse parses flags and positional arguments in any order ("device
// revoke ID --reason X") and checks the number of positional arguments.
func (c *cli) parse(fs *flag.FlagSet, cmd string, args []string, wantPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, c.flagError(fs, cmd, err)
		}
		rest := fs.Args()
		// flag stops at "--": everything after it is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) != wantPos {
		if len(pos) > wantPos {
			return nil, c.usage(cmd, "ctl.err.extra-args", strings.Join(pos[wantPos:], " "))
		}
		return nil, c.usage(cmd, "ctl.err.missing-args")
	}
	if c.g.timeout <= 0 || c.g.timeout > time.Hour {
		return nil, c.usage(cmd, "ctl.err.bad-timeout", c.g.timeout)
	}
	return pos, nil
}

// flagError turns the flag package's English errors into ours.
func (c *cli) flagError(fs *flag.FlagSet, cmd string, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return helpRequest{cmd: cmd, fs: fs}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return c.usage(cmd, "ctl.err.unknown-flag", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return c.usage(cmd, "ctl.err.flag-needs-value", name)
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		// invalid value "x" for flag -name: detail
		val, rest, _ := strings.Cut(rest, " for flag ")
		name, detail, _ := strings.Cut(rest, ": ")
		var le localizedError
		if errors.As(err, &le) {
			detail = le.Error()
		} else if strings.Contains(detail, "parse error") || strings.Contains(detail, "invalid syntax") {
			detail = ""
		}
		if detail == "" {
			return c.usage(cmd, "ctl.err.bad-flag-value", name, val)
		}
		return c.usage(cmd, "ctl.err.bad-flag-value-detail", name, val, detail)
	}
	return c.usage(cmd, "ctl.err.bad-flags", msg)
}

// localizedError is an error whose text is already in the user's language.
type localizedError struct{ msg string }

func (e localizedError) Error() string { return e.msg }

// outputFormat is the -o flag.
type outputFormat string

func (c *cli) outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "table", "ctl.flag.output")
}

// parseCmd parses flags and wantPos positional arguments (parse) and
// checks -o (checkOutput).
func (c *cli) parseCmd(fs *flag.FlagSet, out *string, cmd string, args []string, wantPos int) ([]string, outputFormat, error) {
	pos, err := c.parse(fs, cmd, args, wantPos)
	if err != nil {
		return nil, "", err
	}
	format, err := c.checkOutput(cmd, *out)
	if err != nil {
		return nil, "", err
	}
	return pos, format, nil
}

// requiredArg is a positional argument, trimmed; blank is a usage error.
func (c *cli) requiredArg(cmd, s string) (string, error) {
	if s = strings.TrimSpace(s); s == "" {
		return "", c.usage(cmd, "ctl.err.missing-args")
	}
	return s, nil
}

// changeFlags are the flags of every command that changes something:
// --reason, which the audit log keeps, and -o.
type changeFlags struct{ reason, out *string }

// changeFlagSet is newFlagSet with the changeFlags added.
func (c *cli) changeFlagSet(cmd string) (*flag.FlagSet, changeFlags) {
	fs := c.newFlagSet(cmd)
	return fs, changeFlags{reason: fs.String("reason", "", "ctl.flag.reason"), out: c.outputFlag(fs)}
}

// parseChange parses a changing command: wantPos positional arguments,
// the output format, and the reason, trimmed; without a reason it is a
// usage error.
func (c *cli) parseChange(fs *flag.FlagSet, f changeFlags, cmd string, args []string, wantPos int) (pos []string, format outputFormat, reason string, err error) {
	if pos, format, err = c.parseCmd(fs, f.out, cmd, args, wantPos); err != nil {
		return nil, "", "", err
	}
	if reason = strings.TrimSpace(*f.reason); reason == "" {
		return nil, "", "", c.usage(cmd, "ctl.err.reason-required")
	}
	return pos, format, reason, nil
}

func (c *cli) checkOutput(cmd, o string) (outputFormat, error) {
	switch o {
	case "table", "":
		return "table", nil
	case "json":
		return "json", nil
	}
	return "", c.usage(cmd, "ctl.err.bad-output", o)
}
