package api_test

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

func TestMFABundleAccess(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testMFABundleAccess(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testMFABundleAccess(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

// testMFABundleAccess (issue #14 item 1): a device gets the secrets of the
// users who may log in on it and nothing else. Real server, real mTLS,
// both databases: a device in group A gets A's users only, a device in no
// group gets nobody until the officer names users, a per-terminal key adds
// users for one device without other devices learning of it, the sealed
// and the opened bundle bytes hold no other user's seed, no login-mfa
// control means no bundle (and a held bundle is withdrawn), and
// require_attested keeps bundles from devices whose key is not attested.
func testMFABundleAccess(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	seeds := map[string][]byte{}
	for _, u := range []string{"tanaka", "suzuki", "sato", "kato"} {
		en, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: u})
		if err != nil {
			t.Fatal(err)
		}
		uri, _ := url.Parse(en.OtpauthUri)
		if seeds[u], err = totp.ParseBase32(uri.Query().Get("secret")); err != nil {
			t.Fatal(err)
		}
	}
	a, b, n, p := newMFADevice(t, h, "pc-a"), newMFADevice(t, h, "pc-b"), newMFADevice(t, h, "pc-n"), newMFADevice(t, h, "pc-p")
	for d, g := range map[*mfaDevice]string{a: "市民課", b: "税務課"} {
		if _, err := officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: d.ID, Group: g, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	// Every device enrolled and reported with the default policy: its
	// login-mfa control names nobody, so no device got a bundle.
	for _, d := range []*mfaDevice{a, b, n, p} {
		if bd := d.report(); bd != nil {
			t.Fatalf("%s: bundle with nobody allowed: %v", d.ID, bd.Users)
		}
	}

	pol, err := officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	doc := pol.Policy
	ctl := func(s map[string]string) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: s}
	}
	doc.Controls[policy.ControlLoginMFA] = ctl(map[string]string{policy.DeviceUsersKey(p.ID): "sato"})
	doc.Groups = map[string]*mamoriv1.GroupPolicy{
		"市民課": {Controls: map[string]*mamoriv1.ControlPolicy{policy.ControlLoginMFA: ctl(map[string]string{"users": "tanaka"})}},
		"税務課": {Controls: map[string]*mamoriv1.ControlPolicy{policy.ControlLoginMFA: ctl(map[string]string{"users": "suzuki,kato"})}},
	}
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: doc, ExpectedVersion: doc.Version, Reason: "who may log in where"}); err != nil {
		t.Fatal(err)
	}
	waitPolicyCache()

	check := func(d *mfaDevice, want []string) {
		t.Helper()
		resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")},
			HpkePublicKey: d.pub, MfaBundleVersion: d.ver})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			if resp.MfaBundle != nil {
				t.Fatalf("%s: bundle %s sent to a device allowed nobody", d.ID, resp.MfaBundle.Version)
			}
			return
		}
		if resp.MfaBundle == nil {
			t.Fatalf("%s: no bundle; want %v", d.ID, want)
		}
		kb, _ := d.key.Bytes()
		k, _ := mfabundle.PrivateKey(kb)
		bd, err := mfabundle.Open(k, d.ID, resp.MfaBundle.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		d.ver = bd.Version
		var got []string
		for _, u := range bd.Users {
			got = append(got, u.User)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: bundle users %v; want %v", d.ID, got, want)
		}
		plain, _ := proto.Marshal(bd)
		for u, s := range seeds {
			if slices.Contains(want, u) {
				continue
			}
			if bytes.Contains(plain, s) || bytes.Contains(resp.MfaBundle.Sealed, s) {
				t.Fatalf("%s: the bundle bytes hold %s's seed", d.ID, u)
			}
			if bytes.Contains(plain, []byte(u)) {
				t.Fatalf("%s: the bundle names %s", d.ID, u)
			}
		}
		// The effective policy the device holds names no other device's
		// users (the per-terminal keys are folded away).
		if eff := resp.Policy; eff != nil {
			for k := range eff.Controls[policy.ControlLoginMFA].GetSettings() {
				if k != "users" && len(k) > 6 && k[:6] == "users." {
					t.Fatalf("%s: policy carries per-terminal key %s", d.ID, k)
				}
			}
		}
	}
	check(a, []string{"tanaka"})
	check(b, []string{"kato", "suzuki"})
	check(n, nil)
	check(p, []string{"sato"})

	// Moving a device to another group changes its bundle at once.
	if _, err := officer.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: a.ID, Group: "税務課", Reason: "moved"}); err != nil {
		t.Fatal(err)
	}
	waitPolicyCache()
	check(a, []string{"kato", "suzuki"})

	// require_attested: these software keys are not attested, so their
	// bundles are withdrawn (an empty bundle, version "none").
	pol, _ = officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	doc = pol.Policy
	doc.Groups["税務課"].Controls[policy.ControlLoginMFA].Settings["require_attested"] = "true"
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: doc, ExpectedVersion: doc.Version, Reason: "attested only"}); err != nil {
		t.Fatal(err)
	}
	waitPolicyCache()
	wantWithdrawn := func(d *mfaDevice) {
		t.Helper()
		bd := d.report()
		if bd == nil || bd.Version != "none" || len(bd.Users) != 0 || len(bd.TempCodes) != 0 || len(bd.Unlocks) != 0 {
			t.Fatalf("%s: want the empty bundle, got %v", d.ID, bd)
		}
		if again := d.report(); again != nil {
			t.Fatalf("%s: empty bundle sent twice", d.ID)
		}
	}
	wantWithdrawn(a)
	wantWithdrawn(b)
	check(p, []string{"sato"}) // the base scope: not affected

	// No login-mfa control at all: no device gets a secret.
	pol, _ = officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	doc = pol.Policy
	doc.Groups = nil
	delete(doc.Controls, policy.ControlLoginMFA)
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: doc, ExpectedVersion: doc.Version, Reason: "no MFA"}); err != nil {
		t.Fatal(err)
	}
	waitPolicyCache()
	wantWithdrawn(p)
	check(n, nil)
	// A device that never held a bundle is sent nothing.
	fresh := newMFADevice(t, h, "pc-fresh")
	check(fresh, nil)
}

// TestMFALoginEventsHostile (issue #14 item 9): a device's login events
// move the fleet-wide state only for users it may serve, within bounds:
// no step in the future, lock-outs capped at an hour, junk attributes
// ignored; the report itself is stored either way.
func TestMFALoginEventsHostile(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	setLoginMFA(t, officer, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "tanaka"}})
	d := newMFADevice(t, h, "pc-hostile")
	now := h.Clock.Now()
	step := now.Unix() / 30
	ev := func(kind, user string, attrs ...string) *mamoriv1.Event {
		e := usedEvent(kind, user, "")
		delete(e.Attributes, "code_id")
		for i := 0; i+1 < len(attrs); i += 2 {
			e.Attributes[attrs[i]] = attrs[i+1]
		}
		return e
	}
	d.report(
		ev("mfa_success", "suzuki", "step", fmt.Sprint(step)), // not allowed here
		ev("mfa_failure", "suzuki", "failures", "4"),          // not allowed here
		ev("mfa_lockout", "suzuki", "until", now.Add(time.Hour).Format(time.RFC3339)),
		ev("mfa_success", "tanaka", "step", fmt.Sprint(step+1000)), // the future: no step
		ev("mfa_success", "tanaka", "step", "-5"),
		ev("mfa_success", "tanaka", "step", "9223372036854775807"),
		ev("mfa_failure", "tanaka", "failures", "x"),
		ev("mfa_failure", "tanaka", "failures", "99999999"),          // capped
		ev("mfa_lockout", "tanaka", "until", "2099-01-01T00:00:00Z"), // capped at an hour
		ev("mfa_lockout", "tanaka", "until", "yesterday"),
		ev("mfa_lockout", "tanaka"),
		ev("mfa_success", "Tanaka\u202e", "step", fmt.Sprint(step)),
	)
	ss, err := h.Srv.Store().MFALoginStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].User != "tanaka" || ss[0].LastStep != 0 || ss[0].Failures != 0 ||
		ss[0].LockedUntil.After(now.Add(time.Hour)) || !ss[0].LockedUntil.After(now) {
		t.Fatalf("state after hostile events: %+v", ss)
	}
	// A step within bounds is taken; a success clears the lock-out.
	d.report(ev("mfa_success", "tanaka", "step", fmt.Sprint(step)))
	ss, _ = h.Srv.Store().MFALoginStates(ctx)
	if len(ss) != 1 || ss[0].LastStep != step || !ss[0].LockedUntil.IsZero() {
		t.Fatalf("state after a success: %+v", ss)
	}
}
