package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Exceptions (例外措置) and the asset ledger (端末台帳).

// maxLedgerFile is the largest ledger file ledger import sends (the
// server's limit, checked here first).
const maxLedgerFile = 2 << 20

// parseExpiry reads --expires: a duration from now ("72h", "7d") or a time
// (RFC 3339, or "2006-01-02T15:04" / "2006-01-02 15:04" in local time).
func (c *cli) parseExpiry(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if d, ok := parseTTL(s); ok && d > 0 {
		return c.o.Now().Add(d), true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func (c *cli) exceptionCreate(ctx context.Context, args []string) error {
	const cmd = "exception create"
	fs, cf := c.changeFlagSet(cmd)
	usb := fs.String("usb", "", "ctl.flag.exception.usb")
	device := fs.String("device", "", "ctl.flag.exception.device")
	group := fs.String("group", "", "ctl.flag.exception.group")
	user := fs.String("user", "", "ctl.flag.exception.user")
	expires := fs.String("expires", "", "ctl.flag.exception.expires")
	_, format, reason, err := c.parseChange(fs, cf, cmd, args, 0)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*usb) == "" {
		return c.usage(cmd, "ctl.err.exception-usb")
	}
	if (*device == "") == (*group == "") {
		return c.usage(cmd, "ctl.err.exception-target")
	}
	if !validGroup(*group) {
		return c.usage(cmd, "ctl.err.group")
	}
	at, ok := c.parseExpiry(*expires)
	if !ok {
		return c.usage(cmd, "ctl.err.exception-expires", *expires)
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.CreateException, &mamoriv1.CreateExceptionRequest{
		Usb: strings.TrimSpace(*usb), Device: strings.TrimSpace(*device), Group: *group, User: strings.TrimSpace(*user),
		Reason: reason, ExpiresAt: timestamppb.New(at),
	})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	e := resp.GetException()
	fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.exception.created"))
	return c.writeException(e)
}

func (c *cli) writeException(e *mamoriv1.Exception) error {
	f := &fields{indent: "  "}
	f.add(c.p.Sprintf("ctl.label.exception-id"), e.GetId())
	f.add(c.p.Sprintf("ctl.label.usb"), e.GetUsb())
	if e.GetDeviceId() != "" {
		f.add(c.p.Sprintf("ctl.label.device"), e.GetDeviceId())
	} else {
		f.add(c.p.Sprintf("ctl.label.group"), e.GetGroup())
	}
	f.add(c.p.Sprintf("ctl.label.user"), orDash(e.GetUser()))
	f.add(c.p.Sprintf("ctl.label.expires"), c.localTime(e.GetExpiresAt()))
	f.add(c.p.Sprintf("ctl.label.reason"), e.GetReason())
	if e.GetRevokedAt() != nil {
		f.add(c.p.Sprintf("ctl.label.exception-revoked"), c.localTime(e.GetRevokedAt())+" "+e.GetRevokeReason())
	}
	return f.write(c.o.Stdout)
}

func (c *cli) exceptionList(ctx context.Context, args []string) error {
	const cmd = "exception list"
	fs := c.newFlagSet(cmd)
	device := fs.String("device", "", "ctl.flag.exception.list-device")
	all := fs.Bool("all", false, "ctl.flag.exception.all")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.ListExceptions, &mamoriv1.ListExceptionsRequest{Device: strings.TrimSpace(*device), All: *all})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	if len(resp.GetExceptions()) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.exception.none"))
		return nil
	}
	t := &table{header: []string{
		c.p.Sprintf("ctl.col.id"), c.p.Sprintf("ctl.col.usb"), c.p.Sprintf("ctl.col.target"), c.p.Sprintf("ctl.col.user"),
		c.p.Sprintf("ctl.col.expires"), c.p.Sprintf("ctl.col.state"), c.p.Sprintf("ctl.col.reason"),
	}}
	now := c.o.Now()
	for _, e := range resp.GetExceptions() {
		target := e.GetGroup()
		if e.GetDeviceId() != "" {
			target = shortID(e.GetDeviceId())
		}
		state := c.p.Sprintf("ctl.exception.active")
		switch {
		case e.GetRevokedAt() != nil:
			state = c.p.Sprintf("ctl.exception.revoked")
		case !e.GetExpiresAt().AsTime().After(now):
			state = c.p.Sprintf("ctl.exception.expired")
		}
		// The full ID: exception revoke needs it.
		t.add(e.GetId(), e.GetUsb(), target, orDash(e.GetUser()), c.localTime(e.GetExpiresAt()), state, e.GetReason())
	}
	return t.write(c.o.Stdout)
}

func (c *cli) exceptionRevoke(ctx context.Context, args []string) error {
	const cmd = "exception revoke"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	id, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.RevokeException, &mamoriv1.RevokeExceptionRequest{Id: id, Reason: reason})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.exception.revoked-done"))
	return c.writeException(resp.GetException())
}

func (c *cli) ledgerImport(ctx context.Context, args []string) error {
	const cmd = "ledger import"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	var r io.Reader
	if pos[0] == "-" {
		r = c.o.Stdin
	} else {
		f, err := os.Open(pos[0])
		if err != nil {
			return c.usage(cmd, "ctl.err.ledger-open", pos[0], err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxLedgerFile+1))
	if err != nil {
		return c.usage(cmd, "ctl.err.ledger-open", pos[0], err)
	}
	if len(b) > maxLedgerFile {
		return c.usage(cmd, "ctl.err.ledger-too-large", pos[0], maxLedgerFile>>20)
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ImportLedgerResponse, error) {
		return call(ctx, c, cn, cn.admin.ImportLedger, &mamoriv1.ImportLedgerRequest{Csv: b, Reason: reason})
	}, func(resp *mamoriv1.ImportLedgerResponse) error {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.ledger.imported", resp.GetRows()))
		return nil
	})
}

func (c *cli) ledgerList(ctx context.Context, args []string) error {
	return query(ctx, c, "ledger list", args, func(ctx context.Context, cn *conn) (*mamoriv1.ListLedgerResponse, error) {
		return call(ctx, c, cn, cn.admin.ListLedger, &mamoriv1.ListLedgerRequest{})
	}, c.ledgerText)
}

func (c *cli) ledgerText(resp *mamoriv1.ListLedgerResponse) error {
	if len(resp.GetRows()) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.ledger.none"))
		return nil
	}
	t := &table{header: []string{
		c.p.Sprintf("ctl.col.asset"), c.p.Sprintf("ctl.col.hostname"), c.p.Sprintf("ctl.col.group"),
		c.p.Sprintf("ctl.col.ledger-state"), c.p.Sprintf("ctl.col.location"),
	}}
	for _, r := range resp.GetRows() {
		t.add(orDash(r.GetAssetId()), r.GetHostname(), orDash(r.GetGroup()), c.p.Sprintf(i18n.ID("console.ledger.state."+r.GetState())), r.GetLocation())
	}
	return t.write(c.o.Stdout)
}
