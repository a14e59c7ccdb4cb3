package ctl

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// recentEvents is how many events device show asks for.
const recentEvents = 20

func (c *cli) deviceShow(ctx context.Context, args []string) error {
	const cmd = "device show"
	fs := c.newFlagSet(cmd)
	out := c.outputFlag(fs)
	pos, format, err := c.parseCmd(fs, out, cmd, args, 1)
	if err != nil {
		return err
	}
	key, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	resp, err := call(ctx, c, cn, cn.admin.GetDevice, &mamoriv1.GetDeviceRequest{IdOrHostname: key, RecentEvents: recentEvents})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	return c.writeDevice(resp)
}

func (c *cli) writeDevice(resp *mamoriv1.GetDeviceResponse) error {
	w := c.o.Stdout
	d := resp.GetDevice()
	f := d.GetFacts()
	yesNo := func(b bool) string {
		if b {
			return c.p.Sprintf("ctl.yes")
		}
		return c.p.Sprintf("ctl.no")
	}
	info := &fields{}
	info.add(c.p.Sprintf("ctl.label.id"), d.GetId())
	info.add(c.p.Sprintf("ctl.label.hostname"), f.GetHostname())
	info.add(c.p.Sprintf("ctl.label.os"), strings.TrimSpace(f.GetOs()+" "+f.GetOsVersion()))
	info.add(c.p.Sprintf("ctl.label.kernel"), f.GetKernel())
	info.add(c.p.Sprintf("ctl.label.agent-version"), f.GetAgentVersion())
	info.add(c.p.Sprintf("ctl.label.machine-id"), f.GetMachineId())
	info.add(c.p.Sprintf("ctl.label.tpm"), yesNo(f.GetTpmPresent()))
	info.add(c.p.Sprintf("ctl.label.key-storage"), f.GetKeyStorage())
	info.add(c.p.Sprintf("ctl.label.device-key"), c.deviceKey(d))
	if d.GetCloneOf() != "" {
		info.add(c.p.Sprintf("ctl.label.clone-of"), c.p.Sprintf("ctl.clone.pending", d.GetCloneOf(), d.GetId()))
	}
	info.add(c.p.Sprintf("ctl.label.compliance"), c.complianceName(d.GetCompliance()))
	if rs := d.GetReasons(); len(rs) > 0 {
		for i, r := range rs {
			label := ""
			if i == 0 {
				label = c.p.Sprintf("ctl.label.reasons")
			}
			info.add(label, "- "+r)
		}
	}
	if d.GetFailingSince() != nil {
		info.add(c.p.Sprintf("ctl.label.failing-since"), c.when(d.GetFailingSince()))
	}
	if d.GetOfflineSince() != nil {
		info.add(c.p.Sprintf("ctl.label.offline-since"), c.when(d.GetOfflineSince()))
	}
	info.add(c.p.Sprintf("ctl.label.last-seen"), c.when(d.GetLastSeen()))
	info.add(c.p.Sprintf("ctl.label.enrolled"), c.when(d.GetEnrolledAt()))
	info.add(c.p.Sprintf("ctl.label.policy-version"), strconv.FormatInt(d.GetPolicyVersion(), 10))
	if d.GetGroup() != "" {
		info.add(c.p.Sprintf("ctl.label.group"), d.GetGroup())
	}
	if d.GetRevokedAt() != nil {
		info.add(c.p.Sprintf("ctl.label.revoked"), c.when(d.GetRevokedAt()))
	} else {
		info.add(c.p.Sprintf("ctl.label.revoked"), c.p.Sprintf("ctl.no"))
	}
	if err := info.write(w); err != nil {
		return err
	}

	fmt.Fprintf(w, "\n%s\n", c.p.Sprintf("ctl.heading.controls"))
	if len(d.GetControls()) == 0 {
		fmt.Fprintln(w, c.p.Sprintf("ctl.controls.none"))
	} else {
		t := &table{header: []string{
			c.p.Sprintf("ctl.col.control"), c.p.Sprintf("ctl.col.mode"), c.p.Sprintf("ctl.col.state"),
			c.p.Sprintf("ctl.col.since"), c.p.Sprintf("ctl.col.observed"), c.p.Sprintf("ctl.col.detail"),
		}}
		for _, r := range d.GetControls() {
			s := r.GetStatus()
			t.add(s.GetControl(), c.modeName(s.GetMode()), c.stateName(s.GetState()),
				c.localTime(r.GetSince()), c.ago(s.GetObservedAt()), orDash(c.statusDetail(s)))
		}
		if err := t.write(w); err != nil {
			return err
		}
		ev := &table{header: []string{c.p.Sprintf("ctl.col.control"), c.p.Sprintf("ctl.col.key"), c.p.Sprintf("ctl.col.value")}}
		for _, r := range d.GetControls() {
			s := r.GetStatus()
			for _, kv := range sortedPairs(s.GetEvidence()) {
				ev.add(s.GetControl(), kv[0], kv[1])
			}
		}
		if len(ev.rows) > 0 {
			fmt.Fprintf(w, "\n%s\n", c.p.Sprintf("ctl.heading.evidence"))
			if err := ev.write(w); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(w, "\n%s\n", c.p.Sprintf("ctl.heading.recent-events"))
	if len(resp.GetRecentEvents()) == 0 {
		fmt.Fprintln(w, c.p.Sprintf("ctl.events.none"))
		return nil
	}
	t := &table{header: []string{
		c.p.Sprintf("ctl.col.time"), c.p.Sprintf("ctl.col.control"), c.p.Sprintf("ctl.col.kind"), c.p.Sprintf("ctl.col.attributes"),
	}}
	for _, e := range resp.GetRecentEvents() {
		ev := e.GetEvent()
		t.add(c.localTime(ev.GetTime()), orDash(ev.GetControl()), orDash(ev.GetKind()), orDash(keyValues(ev.GetAttributes())))
	}
	return t.write(w)
}

// when is a local time with how long ago: "2026-11-25 17:57 (3分前)".
func (c *cli) when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return c.localTime(ts) + " (" + c.ago(ts) + ")"
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func sortedPairs(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// stateName is the localized name of a control state; the English name is
// compliance.StateName (ENFORCED, FAILED, …), as operators read it.
func (c *cli) stateName(s mamoriv1.ControlState) string {
	if _, ok := mamoriv1.ControlState_name[int32(s)]; !ok || s == mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED {
		return c.p.Sprintf("ctl.state.unknown", int32(s))
	}
	return c.p.Sprintf(stateID(s))
}

func (c *cli) modeName(m mamoriv1.Mode) string {
	switch m {
	case mamoriv1.Mode_MODE_MONITOR:
		return c.p.Sprintf("ctl.mode.monitor")
	case mamoriv1.Mode_MODE_ENFORCE:
		return c.p.Sprintf("ctl.mode.enforce")
	case mamoriv1.Mode_MODE_UNSPECIFIED:
		return "-" // a control the policy does not name has no mode
	}
	return c.p.Sprintf("ctl.mode.unknown", int32(m))
}

func (c *cli) deviceRevoke(ctx context.Context, args []string) error {
	const cmd = "device revoke"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 1)
	if err != nil {
		return err
	}
	id, err := c.requiredArg(cmd, pos[0])
	if err != nil {
		return err
	}
	return send(ctx, c, cmd, format, func(ctx context.Context, cn *conn) (*mamoriv1.RevokeDeviceResponse, error) {
		return call(ctx, c, cn, cn.admin.RevokeDevice, &mamoriv1.RevokeDeviceRequest{DeviceId: id, Reason: reason})
	}, func(resp *mamoriv1.RevokeDeviceResponse) error {
		d := resp.GetDevice()
		fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.revoke.done", d.GetId(), d.GetFacts().GetHostname(), c.localTime(d.GetRevokedAt()))))
		fmt.Fprintln(c.o.Stdout, c.p.Sprintf("ctl.revoke.next"))
		return nil
	})
}

func (c *cli) deviceSetGroup(ctx context.Context, args []string) error {
	const cmd = "device set-group"
	fs, cf := c.changeFlagSet(cmd)
	pos, format, reason, err := c.parseChange(fs, cf, cmd, args, 2)
	if err != nil {
		return err
	}
	id, group := strings.TrimSpace(pos[0]), pos[1]
	if id == "" {
		return c.usage(cmd, "ctl.err.missing-args")
	}
	if !validGroup(group) {
		return c.usage(cmd, "ctl.err.group")
	}
	cn, err := c.connect(cmd)
	if err != nil {
		return err
	}
	defer cn.close()
	before, err := call(ctx, c, cn, cn.admin.GetDevice, &mamoriv1.GetDeviceRequest{IdOrHostname: id, RecentEvents: 1})
	if err != nil {
		return err
	}
	resp, err := call(ctx, c, cn, cn.admin.SetDeviceGroup, &mamoriv1.SetDeviceGroupRequest{
		Device: before.GetDevice().GetId(), Group: group, Reason: reason})
	if err != nil {
		return err
	}
	if format == "json" {
		return protoJSON(c.o.Stdout, resp)
	}
	d := resp.GetDevice()
	fmt.Fprintln(c.o.Stdout, sanitizeText(c.p.Sprintf("ctl.set-group.done", d.GetId(), d.GetFacts().GetHostname(), before.GetDevice().GetGroup(), d.GetGroup())))
	return nil
}

// validGroup is the server's group rule (policy.CheckGroupName; empty is
// "no group"), so a typo is caught before a connection is made.
func validGroup(g string) bool { return g == "" || policy.CheckGroupName(g) == nil }

// stateID is the message ID of a control state's name: the enum name
// without its prefix, as compliance.StateName gives it (mamorictl does
// not link server/compliance, which reaches the store).
func stateID(s mamoriv1.ControlState) i18n.ID {
	return i18n.ID("ctl.state." + strings.ToLower(strings.TrimPrefix(s.String(), "CONTROL_STATE_")))
}

// deviceKey says where the device's key is, as far as the server knows:
// attested in a TPM (the server checked), in a TPM by the agent's word
// only, or a software key.
func (c *cli) deviceKey(d *mamoriv1.Device) string {
	switch {
	case d.GetKeyAttested():
		ek := d.GetEkFingerprint()
		if len(ek) > 16 {
			ek = ek[:16] + "…"
		}
		return c.p.Sprintf("ctl.key.tpm-attested", ek)
	case d.GetEkFingerprint() != "":
		// The TPM's EK was proven (same TPM as before) but not verified:
		// no configured vendor root, not approved.
		return c.p.Sprintf("ctl.key.tpm-unverified", d.GetEkFingerprint())
	case d.GetFacts().GetKeyStorage() == "tpm":
		return c.p.Sprintf("ctl.key.tpm")
	}
	return c.p.Sprintf("ctl.key.software")
}

// statusDetail is a control's detail in the user's language when the agent
// sent it as a catalogue message (i18n.StatusDetail).
func (c *cli) statusDetail(s *mamoriv1.ControlStatus) string {
	return i18n.StatusDetail(c.p, s.GetDetail(), s.GetDetailId(), s.GetDetailArgs(), s.GetDetailParts())
}
