package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
)

// commands are the commands general help lists, in order.
var commands = []string{
	"devices", "device show", "device revoke", "device set-group", "device approve-reenrolment", "tpm approve-ek", "tpm list-eks", "fleet", "events", "token create",
	"api-token create", "api-token list", "api-token revoke",
	"policy get", "policy set", "exception create", "exception list", "exception revoke",
	"ledger import", "ledger list", "audit verify",
	"mfa enroll", "mfa import", "mfa reset", "mfa unlock", "mfa temp-code", "mfa list", "mfa access", "version", "help",
}

// helpID is the message ID of a command's help: "ctl.help.device-show".
func helpID(cmd string) i18n.ID {
	if cmd == "" {
		return "ctl.help.main"
	}
	return i18n.ID("ctl.help." + strings.ReplaceAll(cmd, " ", "-"))
}

// help renders the help of one command, or general help, in the user's
// language.
func (c *cli) help(_ context.Context, he helpRequest) string {
	var b strings.Builder
	switch he.cmd {
	case "", "device", "tpm", "token", "api-token", "policy", "audit", "mfa", "exception", "ledger":
		b.WriteString(c.p.Sprintf("ctl.help.main"))
		b.WriteString("\n\n")
		b.WriteString(c.p.Sprintf("ctl.help.commands"))
		b.WriteString("\n")
		f := &fields{indent: "  "}
		for _, cmd := range commands {
			if he.cmd == "" || strings.HasPrefix(cmd, he.cmd+" ") {
				f.add(cmd, c.p.Sprintf(i18n.ID("ctl.summary."+strings.ReplaceAll(cmd, " ", "-"))))
			}
		}
		_ = f.write(&b)
		b.WriteString("\n")
		b.WriteString(c.p.Sprintf("ctl.help.connection"))
		b.WriteString("\n")
		c.writeFlags(&b, c.newFlagSet(""), true)
		b.WriteString("\n")
		b.WriteString(c.p.Sprintf("ctl.help.more"))
		b.WriteString("\n")
		return b.String()
	}
	b.WriteString(c.p.Sprintf(helpID(he.cmd)))
	b.WriteString("\n")
	if he.fs != nil {
		var own strings.Builder
		c.writeFlags(&own, he.fs, false)
		if own.Len() > 0 {
			b.WriteString("\n")
			b.WriteString(c.p.Sprintf("ctl.help.flags"))
			b.WriteString("\n")
			b.WriteString(own.String())
		}
	}
	b.WriteString("\n")
	b.WriteString(c.p.Sprintf("ctl.help.connection"))
	b.WriteString("\n")
	c.writeFlags(&b, c.newFlagSet(""), true)
	return b.String()
}

// globalFlags are the flags every command takes.
var globalFlags = map[string]bool{"server": true, "ca-file": true, "ca-fingerprint": true, "token": true, "timeout": true}

// writeFlags lists fs's flags, either the connection ones or the others.
// A flag's usage string is its message ID.
func (c *cli) writeFlags(b *strings.Builder, fs *flag.FlagSet, connection bool) {
	f := &fields{indent: "  "}
	fs.VisitAll(func(fl *flag.Flag) {
		if globalFlags[fl.Name] != connection {
			return
		}
		dash := "--"
		if len(fl.Name) == 1 {
			dash = "-"
		}
		name := dash + fl.Name
		switch fmt.Sprintf("%T", fl.Value) {
		case "*flag.boolValue":
		case "*flag.intValue":
			name += " N"
		case "*flag.durationValue":
			name += " " + c.p.Sprintf("ctl.help.value.duration")
		default:
			name += " " + c.p.Sprintf("ctl.help.value.text")
		}
		desc := c.p.Sprintf(i18n.ID(fl.Usage))
		def := fl.DefValue
		if connection {
			// The defaults of connection flags are whatever this run was
			// given; only the timeout has a real default.
			def = ""
			if fl.Name == "timeout" {
				def = DefaultTimeout.String()
			}
		}
		if def != "" && def != "false" && def != "0" {
			desc += c.p.Sprintf("ctl.help.default", def)
		}
		f.add(name, desc)
	})
	_ = f.write(b)
}
