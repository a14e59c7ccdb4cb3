package ctl

import (
	"context"
	"fmt"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Paging.
const (
	pageSize = 500
	// maxPages stops a server that hands out next_page_tokens forever.
	maxPages = 10000
	// maxLimit bounds --limit.
	maxLimit = 10_000_000
)

func (c *cli) devices(ctx context.Context, args []string) error {
	const cmd = "devices"
	fs := c.newFlagSet(cmd)
	filters := []struct {
		flag  string
		state mamoriv1.Compliance
		set   *bool
	}{
		{"noncompliant", mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, nil},
		{"offline", mamoriv1.Compliance_COMPLIANCE_OFFLINE, nil},
		{"compliant", mamoriv1.Compliance_COMPLIANCE_COMPLIANT, nil},
		{"never-reported", mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED, nil},
		{"revoked", mamoriv1.Compliance_COMPLIANCE_REVOKED, nil},
	}
	for i := range filters {
		filters[i].set = fs.Bool(filters[i].flag, false, "ctl.flag.devices."+filters[i].flag)
	}
	limit := fs.Int("limit", 0, "ctl.flag.devices.limit")
	group := fs.String("group", "", "ctl.flag.devices.group")
	out := c.outputFlag(fs)
	_, format, err := c.parseCmd(fs, out, cmd, args, 0)
	if err != nil {
		return err
	}
	if *limit < 0 || *limit > maxLimit {
		return c.usage(cmd, "ctl.err.bad-limit", *limit, maxLimit)
	}
	if !validGroup(*group) {
		return c.usage(cmd, "ctl.err.group")
	}
	var state mamoriv1.Compliance
	for _, f := range filters {
		if *f.set {
			if state != mamoriv1.Compliance_COMPLIANCE_UNSPECIFIED {
				return c.usage(cmd, "ctl.err.one-filter")
			}
			state = f.state
		}
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()

	var all []*mamoriv1.Device
	req := &mamoriv1.ListDevicesRequest{Compliance: state, Group: *group}
	for range maxPages {
		req.PageSize = pageSize
		if *limit > 0 {
			req.PageSize = int32(min(pageSize, *limit-len(all)))
		}
		resp, err := call(ctx, c, cn, cn.admin.ListDevices, req)
		if err != nil {
			return err
		}
		all = append(all, resp.Devices...)
		if *limit > 0 && len(all) >= *limit {
			all = all[:*limit]
			break
		}
		next := resp.NextPageToken
		if next == "" || next == req.PageToken || len(resp.Devices) == 0 {
			break
		}
		req = &mamoriv1.ListDevicesRequest{Compliance: state, Group: *group, PageToken: next}
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, &mamoriv1.ListDevicesResponse{Devices: all})
	}
	if len(all) == 0 {
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.devices.none"))
		return nil
	}
	t := &table{header: []string{
		c.p.Sprintf("ctl.col.id"), c.p.Sprintf("ctl.col.hostname"), c.p.Sprintf("ctl.col.state"),
		c.p.Sprintf("ctl.col.last-seen"), c.p.Sprintf("ctl.col.since"), c.p.Sprintf("ctl.col.reasons"),
	}}
	for _, d := range all {
		t.add(shortID(d.Id), d.GetFacts().GetHostname(), c.complianceName(d.Compliance),
			c.ago(d.LastSeen), c.since(d), c.reasons(d.Reasons))
	}
	if err := t.write(c.o.Stdout); err != nil {
		return err
	}
	fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.devices.count", len(all)))
	return nil
}

// shortID is the first 8 characters of a device ID (a UUID), enough to
// tell devices apart on screen; device show accepts the full ID.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// since is when the device entered its current bad state, if it is in one.
func (c *cli) since(d *mamoriv1.Device) string {
	switch d.Compliance {
	case mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT:
		return c.localTime(d.FailingSince)
	case mamoriv1.Compliance_COMPLIANCE_OFFLINE:
		return c.localTime(d.OfflineSince)
	case mamoriv1.Compliance_COMPLIANCE_REVOKED:
		return c.localTime(d.RevokedAt)
	}
	return "-"
}

// reasons is the first reason and how many more: "media: FAILED (+2)".
func (c *cli) reasons(rs []string) string {
	switch len(rs) {
	case 0:
		return "-"
	case 1:
		return rs[0]
	}
	return c.p.Sprintf("ctl.reasons.more", rs[0], len(rs)-1)
}

// complianceName is the localized name of a compliance state.
func (c *cli) complianceName(s mamoriv1.Compliance) string {
	switch s {
	case mamoriv1.Compliance_COMPLIANCE_COMPLIANT:
		return c.p.Sprintf("ctl.compliance.compliant")
	case mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT:
		return c.p.Sprintf("ctl.compliance.noncompliant")
	case mamoriv1.Compliance_COMPLIANCE_OFFLINE:
		return c.p.Sprintf("ctl.compliance.offline")
	case mamoriv1.Compliance_COMPLIANCE_NEVER_REPORTED:
		return c.p.Sprintf("ctl.compliance.never-reported")
	case mamoriv1.Compliance_COMPLIANCE_REVOKED:
		return c.p.Sprintf("ctl.compliance.revoked")
	}
	return c.p.Sprintf("ctl.compliance.unknown", int32(s))
}
