package ctl

import (
	"context"
	"fmt"
	"strconv"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func (c *cli) fleet(ctx context.Context, args []string) error {
	return query(ctx, c, "fleet", args, func(ctx context.Context, cn *conn) (*mamoriv1.FleetSummaryResponse, error) {
		return call(ctx, c, cn, cn.admin.FleetSummary, &mamoriv1.FleetSummaryRequest{})
	}, c.fleetText)
}

func (c *cli) fleetText(resp *mamoriv1.FleetSummaryResponse) error {
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	t := &table{header: []string{c.p.Sprintf("ctl.col.state"), c.p.Sprintf("ctl.col.devices")}}
	t.add(c.complianceName(mamoriv1.Compliance_COMPLIANCE_COMPLIANT), n(resp.Compliant))
	t.add(c.complianceName(mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT), n(resp.Noncompliant))
	t.add(c.complianceName(mamoriv1.Compliance_COMPLIANCE_OFFLINE), n(resp.Offline))
	t.add(c.complianceName(mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED), n(resp.NeverReported))
	t.add(c.complianceName(mamoriv1.Compliance_COMPLIANCE_REVOKED), n(resp.Revoked))
	t.add(c.p.Sprintf("ctl.fleet.total"), n(resp.Total))
	if err := t.write(c.o.Stdout); err != nil {
		return err
	}
	fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.fleet.policy-version", resp.PolicyVersion))
	return nil
}

func (c *cli) events(ctx context.Context, args []string) error {
	const cmd = "events"
	fs := c.newFlagSet(cmd)
	device := fs.String("device", "", "ctl.flag.events.device")
	limit := fs.Int("limit", 100, "ctl.flag.events.limit")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	if *limit < 0 || *limit > maxLimit {
		return c.usage(cmd, "ctl.err.bad-limit", *limit, maxLimit)
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	var all []*mamoriv1.StoredEvent
	req := &mamoriv1.ListEventsRequest{DeviceId: *device}
	for range maxPages {
		req.PageSize = pageSize
		if *limit > 0 {
			req.PageSize = int32(min(pageSize, *limit-len(all)))
		}
		resp, err := call(ctx, c, cn, cn.admin.ListEvents, req)
		if err != nil {
			return err
		}
		all = append(all, resp.Events...)
		if *limit > 0 && len(all) >= *limit {
			all = all[:*limit]
			break
		}
		next := resp.NextPageToken
		if next == "" || next == req.PageToken || len(resp.Events) == 0 {
			break
		}
		req = &mamoriv1.ListEventsRequest{DeviceId: *device, PageToken: next}
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, &mamoriv1.ListEventsResponse{Events: all})
	}
	if len(all) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.events.none"))
		return nil
	}
	t := &table{header: []string{
		c.p.Sprintf("ctl.col.time"), c.p.Sprintf("ctl.col.device"), c.p.Sprintf("ctl.col.control"),
		c.p.Sprintf("ctl.col.kind"), c.p.Sprintf("ctl.col.attributes"),
	}}
	for _, e := range all {
		ev := e.GetEvent()
		t.add(c.localTime(ev.GetTime()), shortID(e.GetDeviceId()), orDash(ev.GetControl()), orDash(ev.GetKind()),
			orDash(keyValues(ev.GetAttributes())))
	}
	return t.write(c.o.Stdout)
}
