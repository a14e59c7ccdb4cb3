package ctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// deviceApproveReenrollment confirms that a device flagged as a possible
// clone is the device whose machine ID it claimed, re-enrolled.
func (c *cli) deviceApproveReenrollment(ctx context.Context, args []string) error {
	const cmd = "device approve-reenrolment"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	id, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ApproveReenrollmentResponse, error) {
		return call(ctx, c, cn, cn.admin.ApproveReenrollment, &mamoriv1.ApproveReenrollmentRequest{Device: id, Reason: reason})
	}, func(resp *mamoriv1.ApproveReenrollmentResponse) error {
		fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.approve-reenrolment.done", resp.GetDevice().GetId(),
			resp.GetDevice().GetFacts().GetHostname(), resp.GetReplaced().GetId())))
		return nil
	})
}

// tpmApproveEK puts a TPM endorsement key on the approved list.
func (c *cli) tpmApproveEK(ctx context.Context, args []string) error {
	const cmd = "tpm approve-ek"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	fp, err := c.requiredArg(cmd, strings.TrimSpace(pos[0]))
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.ApproveEKResponse, error) {
		return call(ctx, c, cn, cn.admin.ApproveEK, &mamoriv1.ApproveEKRequest{EkFingerprint: fp, Note: reason})
	}, func(resp *mamoriv1.ApproveEKResponse) error {
		id := i18n.ID("ctl.approve-ek.done")
		if !resp.GetAdded() {
			id = "ctl.approve-ek.already"
		}
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf(id, fp))
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.approve-ek.next"))
		return nil
	})
}

// tpmListEKs lists the approved endorsement keys.
func (c *cli) tpmListEKs(ctx context.Context, args []string) error {
	const cmd = "tpm list-eks"
	fs := c.newFlagSet(cmd)
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
	resp, err := call(ctx, c, cn, cn.admin.ListApprovedEKs, &mamoriv1.ListApprovedEKsRequest{})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	for _, e := range resp.GetEks() {
		fmt.Fprintln(c.o.Stdout, sanitizeText(fmt.Sprintf("%s  %s  %s  %s", e.GetEkFingerprint(), c.localTime(e.GetApprovedAt()), e.GetApprovedBy(), e.GetNote())))
	}
	return nil
}
