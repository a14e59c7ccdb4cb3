package ctl

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Operator API tokens (docs/security.md): "api-token", not "token", which
// has always made enrolment tokens for terminals.

// maxOperatorTokenTTL is the server's limit (auth.MaxOperatorTokenTTL),
// checked here too so a typo is caught before anything is sent.
const maxOperatorTokenTTL = maxTokenTTL

// apiTokenCreate makes a named operator API token, shown once.
func (c *cli) apiTokenCreate(ctx context.Context, args []string) error {
	const cmd = "api-token create"
	fs := c.newFlagSet(cmd)
	name := fs.String("name", "", "ctl.flag.api-token.name")
	operator := fs.String("operator", "", "ctl.flag.api-token.operator")
	expires := fs.String("expires", "", "ctl.flag.api-token.expires")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	n, err := c.requiredArg(cmd, *name)
	if err != nil {
		return err
	}
	req := &mamoriv1.CreateOperatorTokenRequest{Name: n, Operator: strings.TrimSpace(*operator)}
	if *expires != "" {
		ttl, ok := parseTTL(*expires)
		if !ok {
			return c.usage(cmd, "ctl.err.bad-duration", *expires)
		}
		if ttl <= 0 || ttl > maxOperatorTokenTTL {
			return c.usage(cmd, "ctl.err.ttl-range", *expires)
		}
		req.Ttl = durationpb.New(ttl)
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.CreateOperatorTokenResponse, error) {
		return call(ctx, c, cn, cn.admin.CreateOperatorToken, req)
	}, func(resp *mamoriv1.CreateOperatorTokenResponse) error {
		w := c.o.Stdout
		fmt.Fprintln(w, c.p.Sprintf("ctl.api-token.heading"))
		fmt.Fprintf(w, "  %s\n\n", sanitizeText(resp.GetToken()))
		f := &fields{}
		f.add(c.p.Sprintf("ctl.label.name"), resp.GetInfo().GetName())
		f.add(c.p.Sprintf("ctl.label.operator"), resp.GetInfo().GetOperatorId())
		f.add(c.p.Sprintf("ctl.label.expires"), c.localTime(resp.GetInfo().GetExpiresAt())+" ("+c.ago(resp.GetInfo().GetExpiresAt())+")")
		return f.write(w)
	})
}

// apiTokenList lists operator API tokens: one's own, or with --all every
// operator's (admin).
func (c *cli) apiTokenList(ctx context.Context, args []string) error {
	const cmd = "api-token list"
	fs := c.newFlagSet(cmd)
	all := fs.Bool("all", false, "ctl.flag.api-token.all")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ListOperatorTokensResponse, error) {
		return call(ctx, c, cn, cn.admin.ListOperatorTokens, &mamoriv1.ListOperatorTokensRequest{All: *all})
	}, func(resp *mamoriv1.ListOperatorTokensResponse) error {
		if len(resp.GetTokens()) == 0 {
			fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.api-token.none"))
			return nil
		}
		for _, t := range resp.GetTokens() {
			state := c.p.Sprintf("ctl.api-token.live", c.localTime(t.GetExpiresAt()))
			if t.GetRevokedAt() != nil {
				state = c.p.Sprintf("ctl.api-token.revoked", c.localTime(t.GetRevokedAt()), t.GetRevokedBy())
			}
			used := "-"
			if t.GetLastUsedAt() != nil {
				used = c.localTime(t.GetLastUsedAt())
			}
			kind := ""
			if t.GetBootstrap() {
				kind = " " + c.p.Sprintf("ctl.api-token.bootstrap")
			}
			fmt.Fprintln(c.o.Stdout, sanitizeText(fmt.Sprintf("%s  %s  %s  %s%s", t.GetOperatorName(), t.GetName(), state,
				c.p.Sprintf("ctl.api-token.last-used", used), kind)))
		}
		return nil
	})
}

// apiTokenRevoke revokes an operator API token by name.
func (c *cli) apiTokenRevoke(ctx context.Context, args []string) error {
	const cmd = "api-token revoke"
	fs := c.newFlagSet(cmd)
	operator := fs.String("operator", "", "ctl.flag.api-token.operator")
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	name, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.RevokeOperatorTokenResponse, error) {
		return call(ctx, c, cn, cn.admin.RevokeOperatorToken, &mamoriv1.RevokeOperatorTokenRequest{Name: name, Operator: strings.TrimSpace(*operator)})
	}, func(resp *mamoriv1.RevokeOperatorTokenResponse) error {
		fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.api-token.revoke-done", resp.GetToken().GetName())))
		return nil
	})
}
