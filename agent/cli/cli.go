package cli

import (
	"errors"
	"flag"
	"io"

	"github.com/mamori-dev/mamori/agent/config"
)

// Commands mamori-agent knows.
var commands = map[string]bool{
	"run": true, "enroll": true, "install": true, "uninstall": true,
	"start": true, "stop": true, "status": true, "version": true, "help": true,
	"media": true, "mfa": true, "isolation-boot": true, "credprov-remove": true,
}

// Invocation is a parsed command line.
type Invocation struct {
	Command string
	// ConfigPath is the config file; ConfigGiven is set when --config was
	// passed (then a missing file is an error).
	ConfigPath  string
	ConfigGiven bool
	Overrides   config.Overrides
	// User is the login name of "mfa pin-enroll USER" / "mfa pin-remove USER".
	User string
}

// ErrUnknownCommand is returned for a command mamori-agent does not know.
var ErrUnknownCommand = errors.New("unknown command")

// Parse parses args (without the program name).
func Parse(args []string) (Invocation, error) {
	inv := Invocation{Command: "help", ConfigPath: config.DefaultPath}
	if len(args) == 0 {
		return inv, nil
	}
	inv.Command = args[0]
	switch inv.Command {
	case "-h", "--help", "-help":
		inv.Command = "help"
		return inv, nil
	}
	if !commands[inv.Command] {
		return inv, ErrUnknownCommand
	}
	rest := args[1:]
	if inv.Command == "media" {
		if len(rest) == 0 || rest[0] != "list" {
			return inv, errors.New("media: the only subcommand is list")
		}
		inv.Command, rest = "media list", rest[1:]
	}
	if inv.Command == "mfa" {
		if len(rest) < 2 || (rest[0] != "pin-enroll" && rest[0] != "pin-remove") || rest[1] == "" || rest[1][0] == '-' {
			return inv, errors.New("mfa: pin-enroll USER or pin-remove USER")
		}
		inv.Command, inv.User, rest = "mfa "+rest[0], rest[1], rest[2:]
	}
	fs := flag.NewFlagSet(inv.Command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&inv.ConfigPath, "config", config.DefaultPath, "")
	fs.StringVar(&inv.Overrides.StateDir, "state-dir", "", "")
	var server, token string
	if inv.Command == "enroll" || inv.Command == "run" {
		fs.StringVar(&server, "server", "", "")
		fs.StringVar(&token, "token", "", "")
		fs.StringVar(&inv.Overrides.CAFingerprint, "ca-fingerprint", "", "")
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			inv.Command = "help"
			return inv, nil
		}
		return inv, err
	}
	if fs.NArg() > 0 {
		return inv, errors.New("unexpected argument " + fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			inv.ConfigGiven = true
		}
	})
	inv.Overrides.Servers = config.SplitServers(server)
	inv.Overrides.Token = config.Secret(token)
	return inv, nil
}
