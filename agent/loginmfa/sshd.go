package loginmfa

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// sshd and the second factor.
//
// pam_mamori.so sits in the PAM auth stack, and sshd runs that stack only
// for the methods it hands to PAM: keyboard-interactive (through PAM's
// conversation) and password (with UsePAM yes; sshd then answers every
// prompt of the stack — the code prompt too — with the password, so that
// method alone never passes pam_mamori.so). Public-key, GSSAPI and
// host-based authentication never run the auth stack: with sshd's default
// "AuthenticationMethods any" a key login gets in without a code, however
// the PAM files look. The control therefore reads the effective sshd
// configuration (`sshd -T`, and `sshd -T -C user=NAME` for root and every
// enrolled user so that Match blocks are applied) and finds every
// AuthenticationMethods chain that can complete without a PAM-backed step.
//
// In enforce mode with pam_config=auto the agent writes DropInPath:
//
//	KbdInteractiveAuthentication yes
//	UsePAM yes
//	AuthenticationMethods publickey,keyboard-interactive keyboard-interactive
//
// A key user then answers the PAM stack (password and code) after the
// key; anyone else answers it through keyboard-interactive. The issue
// proposed "password,keyboard-interactive" as the second chain; it cannot
// complete: sshd's password method runs the whole stack with the password
// as every answer, so pam_mamori.so refuses it (measured with Debian 12's
// sshd in TestRealSSHDKeyBypass), and it would count one failure per
// attempt. The file is named so that it sorts first: sshd keeps the first
// value it reads, and Debian's and RHEL's sshd_config include
// sshd_config.d/*.conf at the top. It is checked with `sshd -t` before
// sshd is told to reload (SIGHUP to the pid in its PidFile), and removed
// again in monitor mode. A Match block that sets its own
// AuthenticationMethods overrides the drop-in for the users it matches:
// the check names them, and the state is FAILED until an administrator
// fixes that block.

// DropInPath is the sshd drop-in the agent owns.
const DropInPath = "/etc/ssh/sshd_config.d/00-mamori-mfa.conf"

// dropInMarker starts the drop-in: a file without it is not the agent's
// and is never removed.
const dropInMarker = "# mamori-agent login-mfa"

const dropIn = dropInMarker + ` (enforce, pam_config=auto): written and removed by the agent.
# Public-key logins must still pass the PAM stack (password and code);
# every other login passes it through keyboard-interactive.
KbdInteractiveAuthentication yes
UsePAM yes
AuthenticationMethods publickey,keyboard-interactive keyboard-interactive
`

// maxSSHDUsers bounds the `sshd -T -C user=…` runs of one check.
const maxSSHDUsers = 32

// SSHDConfig is the part of `sshd -T` output the check reads: keyword
// (lower case) → value. Keywords sshd prints more than once keep the
// first.
type SSHDConfig map[string]string

// ParseSSHDConfig reads `sshd -T` output. Lines are "keyword value";
// anything else is ignored. At most 1 MiB is read.
func ParseSSHDConfig(b []byte) SSHDConfig {
	out := SSHDConfig{}
	if len(b) > 1<<20 {
		b = b[:1<<20]
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		k = strings.ToLower(k)
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') }) {
			continue
		}
		if _, ok := out[k]; !ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func (c SSHDConfig) yes(k string) bool { return strings.EqualFold(c[k], "yes") }

// enabled reports whether sshd offers a method at all.
func (c SSHDConfig) enabled(m string) bool {
	base, _, _ := strings.Cut(m, ":")
	switch base {
	case "publickey":
		return c.yes("pubkeyauthentication")
	case "password":
		return c.yes("passwordauthentication")
	case "keyboard-interactive":
		if v, ok := c["kbdinteractiveauthentication"]; ok {
			return strings.EqualFold(v, "yes")
		}
		return c.yes("challengeresponseauthentication") // OpenSSH before 8.7
	case "hostbased":
		return c.yes("hostbasedauthentication")
	case "gssapi-with-mic":
		return c.yes("gssapiauthentication")
	}
	return true // unknown: assume it can complete
}

// pamBacked reports whether a method runs the PAM auth stack.
func (c SSHDConfig) pamBacked(m string) bool {
	if !c.yes("usepam") {
		return false
	}
	switch m {
	case "keyboard-interactive", "keyboard-interactive:pam", "password":
		return true
	}
	return false
}

// Bypasses lists the ways in that skip the PAM auth stack: each
// AuthenticationMethods chain whose methods are all enabled and none of
// which runs PAM ("publickey", "gssapi-with-mic", "hostbased",
// "publickey,hostbased"…). With UsePAM no, password logins skip PAM too.
func (c SSHDConfig) Bypasses() []string {
	am := strings.TrimSpace(c["authenticationmethods"])
	var chains [][]string
	if am == "" || strings.EqualFold(am, "any") {
		for _, m := range []string{"publickey", "gssapi-with-mic", "hostbased", "password", "keyboard-interactive"} {
			chains = append(chains, []string{m})
		}
	} else {
		for _, ch := range strings.Fields(am) {
			chains = append(chains, strings.Split(ch, ","))
		}
	}
	var out []string
	for _, ch := range chains {
		usable, pam := true, false
		for _, m := range ch {
			if !c.enabled(m) {
				usable = false
			}
			if c.pamBacked(m) {
				pam = true
			}
		}
		if !usable || pam {
			continue
		}
		base, _, _ := strings.Cut(ch[0], ":")
		if len(ch) == 1 && base == "keyboard-interactive" && !c.yes("usepam") {
			continue // no PAM, no device: Linux's sshd cannot complete it
		}
		s := strings.Join(ch, ",")
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// sshdReport is what one check of sshd found.
type sshdReport struct {
	installed bool
	stopped   bool     // no /run/sshd: sshd is not running (and sshd -T refuses)
	err       error    // sshd -T failed: the configuration is unknown
	bypass    []string // "publickey" or "user alice: publickey"
	methods   string   // authenticationmethods of the base configuration
	dropIn    bool     // the agent's drop-in is in place
}

func (c *Control) sshdPath() string {
	if p, err := c.opt.LookPath("sshd"); err == nil {
		return p
	}
	for _, p := range []string{"usr/sbin/sshd", "sbin/sshd"} {
		if _, err := fs.Stat(c.fsys, p); err == nil {
			return "/" + p
		}
	}
	return ""
}

// checkSSHD reads the effective configuration for the base case, root and
// the enrolled users.
func (c *Control) checkSSHD(ctx context.Context) sshdReport {
	var r sshdReport
	bin := c.sshdPath()
	if bin == "" {
		return r
	}
	r.installed = true
	r.dropIn = c.ownDropIn()
	// sshd -T refuses without its privilege separation directory, which
	// the service manager makes when it starts sshd: none means no sshd
	// runs now; the next round checks again.
	if _, err := fs.Stat(c.fsys, "run/sshd"); err != nil {
		r.stopped = true
		return r
	}
	base, err := c.sshdT(ctx, bin, "")
	if err != nil {
		r.err = err
		return r
	}
	r.methods = base["authenticationmethods"]
	r.bypass = base.Bypasses()
	users := []string{"root"}
	if c.opt.Users != nil {
		for _, u := range c.opt.Users() {
			if !slices.Contains(users, u) && len(users) < maxSSHDUsers {
				users = append(users, u)
			}
		}
	}
	for _, u := range users {
		if !validUserName(u) {
			continue
		}
		cfg, err := c.sshdT(ctx, bin, u)
		if err != nil {
			r.err = err
			return r
		}
		for _, b := range cfg.Bypasses() {
			if !slices.Contains(r.bypass, b) {
				r.bypass = append(r.bypass, "user "+u+": "+b)
			}
		}
	}
	return r
}

// validUserName keeps what goes into `-C user=` to a plain login name:
// no comma (the spec's separator), no space, no option.
func validUserName(u string) bool {
	if u == "" || len(u) > 64 || u[0] == '-' {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@$", r)) {
			return false
		}
	}
	return true
}

func (c *Control) sshdT(ctx context.Context, bin, user string) (SSHDConfig, error) {
	args := []string{"-T"}
	if user != "" {
		args = append(args, "-C", "user="+user+",host=localhost,addr=127.0.0.1")
	}
	out, err := c.opt.Run(ctx, bin, args...)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, firstLine(out))
	}
	cfg := ParseSSHDConfig(out)
	if _, ok := cfg["authenticationmethods"]; !ok {
		return nil, fmt.Errorf("%s %s printed no authenticationmethods", bin, strings.Join(args, " "))
	}
	return cfg, nil
}

func firstLine(b []byte) string {
	l, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	if len(l) > 200 {
		l = l[:200]
	}
	return string(l)
}

func (c *Control) dropInFile() string {
	return filepath.Join(c.opt.Root, strings.TrimPrefix(DropInPath, "/"))
}

// ownDropIn reports whether the agent's drop-in is in place.
func (c *Control) ownDropIn() bool {
	b, err := readLimitedN(c.fsys, strings.TrimPrefix(DropInPath, "/"), 4096)
	return err == nil && bytes.HasPrefix(b, []byte(dropInMarker))
}

// enableSSHD closes a public-key bypass with the drop-in; it returns what
// it did ("" when nothing was needed).
func (c *Control) enableSSHD(ctx context.Context) (string, error) {
	r := c.checkSSHD(ctx)
	switch {
	case !r.installed, r.stopped:
		return "", nil
	case r.err != nil:
		return "sshd: configuration unreadable", r.err
	case len(r.bypass) == 0:
		return "", nil
	case r.dropIn:
		return "sshd: drop-in in place, bypass remains", sshdBypassError(r.bypass)
	}
	bin := c.sshdPath()
	p := c.dropInFile()
	if _, err := os.Stat(filepath.Dir(p)); err != nil {
		return "sshd: not changed", fmt.Errorf("sshd: %s missing (this sshd_config has no drop-in directory): set AuthenticationMethods by hand (docs/mfa.md)", filepath.Dir(DropInPath))
	}
	if _, err := os.Lstat(p); err == nil {
		return "sshd: not changed", fmt.Errorf("sshd: %s exists and was not written by the agent; not overwriting it", DropInPath)
	}
	if err := writeFileAtomic(p, []byte(dropIn), 0o644); err != nil {
		return "sshd: not changed", fmt.Errorf("sshd drop-in: %w", err)
	}
	if out, err := c.opt.Run(ctx, bin, "-t"); err != nil {
		os.Remove(p)
		return "sshd: not changed", fmt.Errorf("sshd -t refused the drop-in (removed again): %w: %s", err, firstLine(out))
	}
	reload := c.reloadSSHD(ctx, bin)
	if r2 := c.checkSSHD(ctx); r2.err != nil || len(r2.bypass) > 0 {
		if r2.err != nil {
			return "sshd: drop-in written, not verified", r2.err
		}
		return "sshd: drop-in written, bypass remains", sshdBypassError(r2.bypass)
	}
	c.opt.Log.InfoContext(ctx, "login-mfa: sshd drop-in written", "file", DropInPath, "reload", reload)
	return "sshd: drop-in " + DropInPath + " written (" + reload + ")", nil
}

// disableSSHD removes the agent's drop-in.
func (c *Control) disableSSHD(ctx context.Context) (string, error) {
	if !c.ownDropIn() {
		return "", nil
	}
	if err := os.Remove(c.dropInFile()); err != nil {
		return "sshd: revert failed", fmt.Errorf("remove %s: %w", DropInPath, err)
	}
	reload := "sshd not installed"
	if bin := c.sshdPath(); bin != "" {
		reload = c.reloadSSHD(ctx, bin)
	}
	return "sshd: drop-in removed (" + reload + ")", nil
}

func sshdBypassError(b []string) error {
	return fmt.Errorf("sshd lets these logins in without pam_mamori.so: %s (a Match block's AuthenticationMethods overrides the agent's drop-in: set it to publickey,keyboard-interactive keyboard-interactive)", strings.Join(first(b, 5), "; "))
}

// reloadSSHD tells a running sshd to read its configuration again: SIGHUP
// to the pid in its PidFile (what `systemctl reload ssh` does too). With
// no pid file there is no listening daemon (socket activation starts a
// fresh sshd per connection, which reads the files itself).
func (c *Control) reloadSSHD(ctx context.Context, bin string) string {
	if c.opt.ReloadSSHD != nil {
		if err := c.opt.ReloadSSHD(ctx); err != nil {
			return "reload failed: " + err.Error()
		}
		return "reloaded"
	}
	cfg, err := c.sshdT(ctx, bin, "")
	pf := cfg["pidfile"]
	if err != nil || pf == "" || strings.EqualFold(pf, "none") {
		return "no running sshd to reload"
	}
	b, err := os.ReadFile(filepath.Join(c.opt.Root, strings.TrimPrefix(pf, "/")))
	if err != nil {
		return "no running sshd to reload"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return "reload failed: " + pf + " holds no pid"
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); !strings.HasPrefix(string(comm), "sshd") {
		return "no running sshd to reload (stale " + pf + ")"
	}
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGHUP)
	}
	if err != nil {
		return "reload failed: " + err.Error()
	}
	return "reloaded (SIGHUP to " + strconv.Itoa(pid) + ")"
}

func writeFileAtomic(p string, b []byte, mode os.FileMode) error {
	tmp := p + ".mamori-tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}
