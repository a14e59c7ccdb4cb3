package ctl

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// MFAAccessScope is one scope's "who may log in" in "mfa access -o json".
type MFAAccessScope struct {
	// Scope is "base", "group:NAME" or "device:ID".
	Scope string `json:"scope"`
	// Control: the scope has a login-mfa control (a device key: always).
	Control         bool     `json:"control"`
	AllUsers        bool     `json:"all_users"`
	Users           []string `json:"users"`
	RequireAttested bool     `json:"require_attested"`
}

// MFAAccessDevice is one device's answer in "mfa access DEVICE -o json".
type MFAAccessDevice struct {
	ID          string   `json:"id"`
	Hostname    string   `json:"hostname"`
	Group       string   `json:"group"`
	KeyAttested bool     `json:"key_attested"`
	AllUsers    bool     `json:"all_users"`
	Users       []string `json:"users"`
	// Bundle: the device receives the factors of Users; else Refused says
	// why not (no_control, bad_settings, not_attested, no_users).
	Bundle  bool   `json:"bundle"`
	Refused string `json:"refused,omitempty"`
}

// MFAAccessJSON is "mfa access -o json".
type MFAAccessJSON struct {
	PolicyVersion int64            `json:"policy_version"`
	Scopes        []MFAAccessScope `json:"scopes"`
	Device        *MFAAccessDevice `json:"device,omitempty"`
}

// mfaAccess shows who may log in where: the login-mfa users setting of
// every policy scope and the per-terminal keys, or, for one device, the
// users its effective policy names and whether it receives a bundle. It
// reads the policy document (and the device); the rules are the server's
// own (internal/policy.EffectiveForDevice and MFAAccessOf).
func (c *cli) mfaAccess(ctx context.Context, args []string) error {
	const cmd = "mfa access"
	fs := c.newFlagSet(cmd)
	device := fs.String("device", "", "ctl.flag.mfa.access-device")
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
	pol, err := call(ctx, c, cn, cn.admin.GetPolicy, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		return err
	}
	p := pol.GetPolicy()
	res := MFAAccessJSON{PolicyVersion: p.GetVersion(), Scopes: accessScopes(p)}
	if key := strings.TrimSpace(*device); key != "" {
		dr, err := call(ctx, c, cn, cn.admin.GetDevice, &mamoriv1.GetDeviceRequest{IdOrHostname: key})
		if err != nil {
			return err
		}
		d := dr.GetDevice()
		a := policy.MFAAccessOf(policy.EffectiveForDevice(p, d.GetGroup(), d.GetId(), nil, c.o.Now()))
		why := a.Refusal(d.GetKeyAttested())
		res.Device = &MFAAccessDevice{ID: d.GetId(), Hostname: d.GetFacts().GetHostname(), Group: d.GetGroup(),
			KeyAttested: d.GetKeyAttested(), AllUsers: a.All, Users: nonNil(a.Users), Bundle: why == "", Refused: why}
	}
	if format == "json" {
		return plainJSON(c.o.Stdout, res)
	}
	return c.mfaAccessText(res)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// accessScopes lists the base, each group that overrides login-mfa (by
// name) and each per-terminal key (by device ID, under its scope).
func accessScopes(p *mamoriv1.Policy) []MFAAccessScope {
	var out []MFAAccessScope
	add := func(scope string, c *mamoriv1.ControlPolicy, ok bool) {
		if !ok {
			out = append(out, MFAAccessScope{Scope: scope, Users: []string{}})
			return
		}
		l, err := policy.LoginMFASettings(&mamoriv1.Policy{Controls: map[string]*mamoriv1.ControlPolicy{policy.ControlLoginMFA: c}})
		if err != nil {
			out = append(out, MFAAccessScope{Scope: scope, Control: true, Users: []string{}})
			return
		}
		out = append(out, MFAAccessScope{Scope: scope, Control: true, AllUsers: l.AllUsers, Users: nonNil(l.Users), RequireAttested: l.RequireAttested})
		for _, id := range slices.Sorted(maps.Keys(l.DeviceUsers)) {
			out = append(out, MFAAccessScope{Scope: scope + " device:" + id, Control: true, Users: nonNil(l.DeviceUsers[id]),
				RequireAttested: l.RequireAttested})
		}
	}
	bc, ok := p.GetControls()[policy.ControlLoginMFA]
	add("base", bc, ok)
	for _, g := range slices.Sorted(maps.Keys(p.GetGroups())) {
		if gc, ok := p.GetGroups()[g].GetControls()[policy.ControlLoginMFA]; ok {
			add("group:"+g, gc, true)
		}
	}
	return out
}

func (c *cli) mfaAccessText(res MFAAccessJSON) error {
	w := c.o.Stdout
	users := func(all bool, us []string, control bool) string {
		switch {
		case !control:
			return c.p.Sprintf("ctl.mfa.access.no-control")
		case all:
			return c.p.Sprintf("ctl.mfa.access.all")
		case len(us) == 0:
			return c.p.Sprintf("ctl.mfa.access.nobody")
		}
		return strings.Join(us, ", ")
	}
	yesNo := func(b bool) string {
		if b {
			return c.p.Sprintf("ctl.yes")
		}
		return c.p.Sprintf("ctl.no")
	}
	if d := res.Device; d != nil {
		f := &fields{}
		f.add(c.p.Sprintf("ctl.label.id"), d.ID)
		f.add(c.p.Sprintf("ctl.label.hostname"), d.Hostname)
		f.add(c.p.Sprintf("ctl.label.group"), orDash(d.Group))
		f.add(c.p.Sprintf("ctl.mfa.access.attested"), yesNo(d.KeyAttested))
		f.add(c.p.Sprintf("ctl.mfa.access.users"), users(d.AllUsers, d.Users, d.Refused != policy.MFARefusedNoControl))
		bundle := c.p.Sprintf("ctl.yes")
		if !d.Bundle {
			bundle = c.p.Sprintf(i18n.ID("ctl.mfa.access.refused." + d.Refused))
		}
		f.add(c.p.Sprintf("ctl.mfa.access.bundle"), bundle)
		if err := f.write(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	t := &table{header: []string{c.p.Sprintf("ctl.col.scope"), c.p.Sprintf("ctl.col.users"), c.p.Sprintf("ctl.col.attested-only")}}
	for _, s := range res.Scopes {
		scope := s.Scope
		if _, id, ok := strings.Cut(scope, " device:"); ok {
			scope = "└ " + id // a terminal named in the scope above
		}
		t.add(scope, users(s.AllUsers, s.Users, s.Control), yesNo(s.RequireAttested))
	}
	if err := t.write(w); err != nil {
		return err
	}
	fmt.Fprintln(w, c.p.Sprintf("ctl.mfa.access.how", res.PolicyVersion))
	return nil
}
