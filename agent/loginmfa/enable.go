package loginmfa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// How the module is switched on and off.
//
// Debian/Ubuntu: pam-auth-update with the profile the .deb ships as
// /usr/share/pam-configs/mamori ("Default: no", so no other package's
// pam-auth-update run switches it on). `pam-auth-update --enable mamori`
// adds `auth required pam_mamori.so` to the "Additional" block of
// /etc/pam.d/common-auth, after the password modules and pam_permit;
// `pam-auth-update --remove mamori` takes it out again. common-auth is
// included by every service that authenticates (login, sshd, gdm-password,
// su, sudo, polkit, screen lockers…): enabling covers them all, whatever
// `services` names — `services` is what the control checks, not a limit.
// A site that wants only some services must use pam_config=manual and
// edit those files itself. pam-auth-update leaves common-auth alone when
// an administrator edited it by hand (it says so and exits 0), which is
// why every change is verified by reading the stack again.
//
// RHEL family: authselect. The agent makes a custom profile "mamori" based
// on the profile in use (authselect create-profile --base-on), rewrites
// its system-auth and password-auth so that, with the feature
// with-mamori, pam_mamori.so follows every first factor (pam_unix,
// pam_sss, pam_winbind, …) and every jump still lands where it did — the
// password is asked first, and every way to success passes both factors,
// proved for every feature combination before the file is written (see
// RewriteAuthselect in authselect.go) — and selects custom/mamori with the
// features in use plus with-mamori. Reverting disables the feature. The
// .rpm ships nothing under /etc/authselect: the profile is made on the
// terminal from the profile in use there.
//
// Elsewhere: nothing is changed; the status is DEGRADED and says how to
// add the line by hand.

// Profile is the pam-auth-update profile's name and path.
const (
	ProfileName = "mamori"
	ProfilePath = "/usr/share/pam-configs/mamori"
	// authselect
	AuthselectProfile = "mamori"
	AuthselectFeature = "with-mamori"
	authselectDir     = "/etc/authselect/custom/mamori"
)

// authselectLine is what agents before issue 21 put into the profile,
// before the first jump: the code was asked before the password.
// RewriteAuthselect takes it out.
const authselectLine = `auth        required                                     pam_mamori.so {include if "with-mamori"}`

type method int

const (
	methodNone method = iota
	methodPAMAuthUpdate
	methodAuthselect
)

func (c *Control) method() method {
	if _, err := c.opt.LookPath("pam-auth-update"); err == nil {
		return methodPAMAuthUpdate
	}
	if _, err := c.opt.LookPath("authselect"); err == nil {
		return methodAuthselect
	}
	return methodNone
}

func lookPath(p string) (string, error) { return exec.LookPath(p) }

// runCommand runs a program non-interactively.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	cmd.Stdin = nil
	return cmd.CombinedOutput()
}

func (c *Control) run(ctx context.Context, name string, args ...string) error {
	out, err := c.opt.Run(ctx, name, args...)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// covered reports whether every service in s is covered now.
func (c *Control) covered(s Settings) (bool, []string) {
	var bad []string
	for _, svc := range s.Services {
		st, err := LoadStack(c.fsys, svc)
		if err != nil {
			bad = append(bad, svc+": "+err.Error())
			continue
		}
		if len(st.Problems) > 0 {
			bad = append(bad, svc+": "+st.Problems[0])
			continue
		}
		if v := Evaluate(st.Entries); !v.Required {
			why := "absent"
			if v.Present {
				why = v.Bypass
			}
			bad = append(bad, svc+": "+why)
		}
	}
	return len(bad) == 0, bad
}

// enable switches the module on and verifies it. Before touching PAM it
// makes sure the module is there and matches the expected hash, and that
// someone can log in: a required module that cannot load, or a verifier
// without users, would lock everyone out of the terminal.
func (c *Control) enable(ctx context.Context, s Settings) (string, error) {
	m := c.method()
	// Covered already — by the agent earlier, or by hand: nothing to do
	// (enabling again would add a second code prompt).
	if ok, _ := c.covered(s); ok {
		return "enabled (already in place)", nil
	}
	// Switched on earlier and still not covered (a service whose own file
	// skips common-auth, or hand-edited common-* files): running the tool
	// again every round changes nothing; report why.
	if m == methodPAMAuthUpdate && c.pamAuthUpdateEnabled() {
		_, bad := c.covered(s)
		return "enabled, not verified", notVerified(bad)
	}
	if m == methodNone {
		return "manual: neither pam-auth-update nor authselect found", nil
	}
	_, sum, err := c.hashModule(ModuleMamori)
	if err != nil {
		return "not enabled", fmt.Errorf("not enabling pam_mamori.so: the module is not installed (%v); reinstall mamori-agent", err)
	}
	want, _, _ := c.expectedHashes(s)
	if len(want) > 0 && !contains(want, sum) {
		return "not enabled", fmt.Errorf("not enabling pam_mamori.so: its SHA-256 %s is not the expected one", sum[:12])
	}
	switch {
	case c.opt.Users == nil:
		return "not enabled", errors.New("not enabling pam_mamori.so: the agent's MFA verifier is not running, every login would be refused")
	case len(c.opt.Users()) == 0:
		return "not enabled", errors.New("not enabling pam_mamori.so: no user is enrolled on this terminal yet, every login would be refused (enrol users, then the next round enables it)")
	}
	switch m {
	case methodPAMAuthUpdate:
		if _, err := fs.Stat(c.fsys, strings.TrimPrefix(ProfilePath, "/")); err != nil {
			return "not enabled", fmt.Errorf("pam-auth-update profile %s missing: reinstall mamori-agent", ProfilePath)
		}
		if err := c.run(ctx, "pam-auth-update", "--enable", ProfileName); err != nil {
			return "not enabled", err
		}
	case methodAuthselect:
		if err := c.authselectEnable(ctx); err != nil {
			return "not enabled", err
		}
	}
	if ok, bad := c.covered(s); !ok {
		return "enabled, not verified", notVerified(bad)
	}
	c.opt.Log.InfoContext(ctx, "login-mfa: pam_mamori.so enabled and verified")
	return "enabled and verified", nil
}

func notVerified(bad []string) error {
	return fmt.Errorf("enabled pam_mamori.so, but the stack still does not require it (%s); a service whose own file lets people in before common-auth cannot be covered this way, and pam-auth-update leaves hand-edited /etc/pam.d/common-* files alone: fix the file, run pam-auth-update --force, or use pam_config=manual",
		strings.Join(first(bad, 3), "; "))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// pamAuthUpdateEnabled reports whether pam-auth-update has the mamori
// profile selected (its record in /var/lib/pam/auth).
func (c *Control) pamAuthUpdateEnabled() bool {
	b, err := readLimitedN(c.fsys, "var/lib/pam/auth", 1<<20)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "Module: "+ProfileName {
			return true
		}
	}
	return false
}

// disable reverts what enable did; PAM is otherwise left alone.
func (c *Control) disable(ctx context.Context) (string, error) {
	switch c.method() {
	case methodPAMAuthUpdate:
		if !c.pamAuthUpdateEnabled() {
			return "not enabled (PAM left alone)", nil
		}
		if err := c.run(ctx, "pam-auth-update", "--remove", ProfileName); err != nil {
			return "revert failed", err
		}
		if c.pamAuthUpdateEnabled() {
			return "revert failed", errors.New("pam-auth-update --remove mamori left the profile selected")
		}
		c.opt.Log.InfoContext(ctx, "login-mfa: pam_mamori.so removed from common-auth")
		return "reverted (pam-auth-update --remove mamori)", nil
	case methodAuthselect:
		cur, err := c.opt.Run(ctx, "authselect", "current", "--raw")
		if err != nil || !contains(strings.Fields(string(cur)), AuthselectFeature) {
			return "not enabled (PAM left alone)", nil
		}
		if err := c.run(ctx, "authselect", "disable-feature", AuthselectFeature); err != nil {
			return "revert failed", err
		}
		return "reverted (authselect disable-feature with-mamori)", nil
	}
	return "PAM left alone", nil
}

// authselectEnable makes or refreshes the custom profile and selects it
// with the with-mamori feature.
func (c *Control) authselectEnable(ctx context.Context) error {
	cur, err := c.opt.Run(ctx, "authselect", "current", "--raw")
	if err != nil {
		return fmt.Errorf("authselect current: %w: %s (select a profile first, e.g. authselect select sssd)", err, bytes.TrimSpace(cur))
	}
	f := strings.Fields(string(cur))
	if len(f) == 0 {
		return errors.New("authselect current printed nothing: select a profile first")
	}
	base, features := f[0], f[1:]
	if base != "custom/"+AuthselectProfile {
		dir := filepath.Join(c.opt.Root, authselectDir)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := c.run(ctx, "authselect", "create-profile", AuthselectProfile, "--base-on="+base,
				"--symlink-meta", "--symlink-nsswitch", "--symlink-dconf"); err != nil {
				return err
			}
		}
	}
	for _, name := range []string{"system-auth", "password-auth"} {
		p := filepath.Join(c.opt.Root, authselectDir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("authselect profile: %w", err)
		}
		nb, changed, err := RewriteAuthselect(b)
		if err != nil {
			return fmt.Errorf("authselect profile %s: %w", name, err)
		}
		if changed {
			if err := os.WriteFile(p, nb, 0o644); err != nil {
				return fmt.Errorf("authselect profile: %w", err)
			}
		}
	}
	args := []string{"select", "custom/" + AuthselectProfile}
	for _, ft := range features {
		if ft != AuthselectFeature {
			args = append(args, ft)
		}
	}
	// No --force: authselect refuses to overwrite PAM files changed by
	// hand, and the agent reports that rather than overwrite them.
	return c.run(ctx, "authselect", append(args, AuthselectFeature)...)
}
