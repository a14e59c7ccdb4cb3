package ctl

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Token limits, the same as the server's (server/api); checked here too so
// that a typo is caught before anything is sent.
const (
	minTokenTTL   = time.Minute
	maxTokenTTL   = 90 * 24 * time.Hour
	maxTokenUses  = 100000
	maxNoteLength = 512
)

// TokenJSON is "token create -o json": field names are stable.
type TokenJSON struct {
	// Token is the enrolment token, shown once.
	Token   string `json:"token"`
	TokenID string `json:"token_id"`
	// ExpiresAt is RFC 3339 UTC.
	ExpiresAt string `json:"expires_at"`
	Uses      int32  `json:"uses"`
	// CAFingerprint is the SHA-256 of the server CA, hex.
	CAFingerprint string `json:"ca_fingerprint"`
	// Server is the address mamorictl used (the admin API).
	Server string `json:"server"`
	// AgentServer is the address agents enrol on: the same host, the
	// agents' port the server names.
	AgentServer string `json:"agent_server"`
	// AgentCommand is a ready-to-run enrolment command line.
	AgentCommand string `json:"agent_command"`
}

// parseTTL reads a Go duration ("36h", "90m") or whole days ("7d").
func parseTTL(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 3650 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func (c *cli) tokenCreate(ctx context.Context, args []string) error {
	const cmd = "token create"
	fs := c.newFlagSet(cmd)
	expires := fs.String("expires", "24h", "ctl.flag.token.expires")
	uses := fs.Int("uses", 1, "ctl.flag.token.uses")
	note := fs.String("note", "", "ctl.flag.token.note")
	group := fs.String("group", "", "ctl.flag.token.group")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	ttl, ok := parseTTL(*expires)
	if !ok {
		return c.usage(cmd, "ctl.err.bad-duration", *expires)
	}
	if ttl < minTokenTTL || ttl > maxTokenTTL {
		return c.usage(cmd, "ctl.err.ttl-range", *expires)
	}
	if *uses < 1 || *uses > maxTokenUses {
		return c.usage(cmd, "ctl.err.uses-range", *uses, maxTokenUses)
	}
	if !utf8.ValidString(*note) || utf8.RuneCountInString(*note) > maxNoteLength {
		return c.usage(cmd, "ctl.err.note", maxNoteLength)
	}
	if !validGroup(*group) {
		return c.usage(cmd, "ctl.err.group")
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.CreateEnrollmentToken, &mamoriv1.CreateEnrollmentTokenRequest{
		Ttl: durationpb.New(ttl), Uses: int32(*uses), Note: *note, Group: *group,
	})
	if err != nil {
		return err
	}
	// Agents enrol on the agents' port, not the admin API's.
	agentServer := cn.server
	if p := resp.GetAgentPort(); p != "" {
		if host, _, err := net.SplitHostPort(cn.server); err == nil {
			agentServer = net.JoinHostPort(host, p)
		}
	}
	agentCmd := fmt.Sprintf("mamori-agent enroll --server %s --token %s --ca-fingerprint %s",
		shellQuote(agentServer), shellQuote(resp.GetToken()), shellQuote(resp.GetCaFingerprint()))
	if format == "json" {
		return plainJSON(c.o.Stdout, TokenJSON{
			Token: resp.GetToken(), TokenID: resp.GetTokenId(),
			ExpiresAt: resp.GetExpiresAt().AsTime().UTC().Format(time.RFC3339),
			Uses:      resp.GetUses(), CAFingerprint: resp.GetCaFingerprint(),
			Server: cn.server, AgentServer: agentServer, AgentCommand: agentCmd,
		})
	}
	w := c.o.Stdout
	fmt.Fprintln(w, c.p.Sprintf("ctl.token.heading"))
	fmt.Fprintf(w, "  %s\n\n", sanitizeText(resp.GetToken()))
	f := &fields{}
	f.add(c.p.Sprintf("ctl.label.token-id"), resp.GetTokenId())
	f.add(c.p.Sprintf("ctl.label.expires"), c.localTime(resp.GetExpiresAt())+" ("+c.ago(resp.GetExpiresAt())+")")
	f.add(c.p.Sprintf("ctl.label.uses"), strconv.Itoa(int(resp.GetUses())))
	f.add(c.p.Sprintf("ctl.label.ca-fingerprint"), resp.GetCaFingerprint())
	if *group != "" {
		f.add(c.p.Sprintf("ctl.label.group"), *group)
	}
	if err := f.write(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n  %s\n", c.p.Sprintf("ctl.token.agent-command"), sanitizeText(agentCmd))
	return nil
}

// shellQuote quotes s for a POSIX shell and PowerShell alike when it holds
// anything but safe characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:/[]@=+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
