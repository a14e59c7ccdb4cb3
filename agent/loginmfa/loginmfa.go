// Package loginmfa is the "login-mfa" control: it proves that logins on
// this terminal need a second factor (多要素認証) and, in enforce mode,
// puts pam_mamori.so into the PAM stack itself.
//
// Status reads the real PAM configuration under a root directory (default
// "/"), expands each service the policy names (include, substack,
// @include) and applies the stack rule (stack.go): pam_mamori.so must be
// in the auth stack so that no way through it succeeds while the module
// refuses. It hashes the module file (SHA-256) and compares it with the
// expected hash, and reports the users enrolled on this terminal
// (agent/mfa) and whether a TPM is present. ENFORCED only when every named
// service is covered, every module file matches, at least one user is
// enrolled and the agent's verifier is running.
//
// Apply, in enforce mode, enables the module through the distribution's
// own tool — pam-auth-update on Debian/Ubuntu (profile
// /usr/share/pam-configs/mamori, shipped by the .deb and never switched on
// by the package), authselect on the RHEL family (a custom profile with a
// "with-mamori" feature) — and verifies the result by reading the stack
// again. In monitor mode, or when the policy stops naming the control, it
// reverts what it enabled and leaves PAM alone otherwise, and reports
// logins that would have been refused (wtmp.go) as mfa_would_refuse
// events.
//
// On Windows the same control registers mamori's credential provider and
// filter instead (credprov.go, Options.CredProv); without them wired it
// reports NOT_APPLICABLE.
//
// Settings (policy control "login-mfa"; other settings of the same control
// belong to agent/mfa and are left alone here):
//
//	services       comma-separated PAM services that must be covered,
//	               default "login,sshd,gdm-password". A service without a
//	               file under /etc/pam.d is checked through "other", as
//	               libpam would.
//	module_sha256  comma-separated hex SHA-256 values pam_mamori.so may
//	               have. Unset: the hash the package recorded at build time
//	               in /usr/share/mamori-agent/pam_mamori.so.sha256.
//	pam_config     "auto" (default): the agent enables and reverts the
//	               module with pam-auth-update or authselect. "manual": the
//	               agent never changes PAM and only checks it.
package loginmfa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Settings and their defaults.
const (
	SettingServices     = policy.SettingMFAServices
	SettingModuleSHA256 = "module_sha256"
	SettingPAMConfig    = "pam_config"

	DefaultServices = "login,sshd,gdm-password"
	// HashFile is where the packages record the module's SHA-256.
	HashFile = "/usr/share/mamori-agent/pam_mamori.so.sha256"
	// KindWouldRefuse is the monitor-mode event.
	KindWouldRefuse = "mfa_would_refuse"
	// DefaultWtmp is glibc's login record file.
	DefaultWtmp = "/var/log/wtmp"
)

// Settings are the control's settings, parsed.
type Settings struct {
	Services []string
	Hashes   []string // lower-case hex; empty: use HashFile
	Manual   bool
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseSettings reads this control's settings strictly; keys it does not
// own are ignored.
func ParseSettings(s map[string]string) (Settings, error) {
	var out Settings
	var errs []error
	svc := s[SettingServices]
	if strings.TrimSpace(svc) == "" {
		svc = DefaultServices
	}
	for _, f := range strings.Split(svc, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !policy.CheckPAMService(f) { // the rule the console's form checks too
			errs = append(errs, fmt.Errorf("setting %s: %q is not a PAM service name", SettingServices, f))
			continue
		}
		if !slices.Contains(out.Services, f) {
			out.Services = append(out.Services, f)
		}
	}
	if len(out.Services) > policy.MaxMFAServices {
		errs = append(errs, fmt.Errorf("setting %s: %d services; at most %d", SettingServices, len(out.Services), policy.MaxMFAServices))
	}
	for _, f := range strings.Split(s[SettingModuleSHA256], ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if !sha256RE.MatchString(f) {
			errs = append(errs, fmt.Errorf("setting %s: %q is not a hex SHA-256", SettingModuleSHA256, f))
			continue
		}
		out.Hashes = append(out.Hashes, f)
	}
	switch v := s[SettingPAMConfig]; v {
	case "", "auto":
	case "manual":
		out.Manual = true
	default:
		errs = append(errs, fmt.Errorf("setting %s=%q: use auto or manual", SettingPAMConfig, v))
	}
	if len(errs) > 0 {
		// Fail closed: check the defaults (every default service) and
		// never change PAM on a setting we cannot read.
		def, _ := ParseSettings(nil)
		def.Manual = true
		return def, errors.Join(errs...)
	}
	return out, nil
}

// Options configures the control.
type Options struct {
	// Root is the filesystem root PAM files are read under ("/").
	Root string
	// Emitter receives mfa_would_refuse events. Required.
	Emitter control.Emitter
	Log     *slog.Logger
	// Users lists the users enrolled on this terminal (mfa.Verifier.Users).
	// Nil means the verifier or its socket is not running: every login
	// through pam_mamori.so is refused, so the module is never enabled.
	Users func() []string
	// GraceUsers lists the users who logged in without a factor under the
	// policy's grace period and still have none (mfa.Verifier.GraceUsers).
	// Nil: no grace information. While it is not empty, passwords alone
	// let people in, so the control is DEGRADED (not compliant).
	GraceUsers func() []string
	// BundleVersion, when set, is the version of the MFA bundle the
	// verifier holds ("g<generation>.p<policy>"), reported as evidence
	// mfa_bundle: a helpdesk (and the e2e test) can see whether a terminal
	// has caught up with a change on the server.
	BundleVersion func() string
	// TPMPresent reports whether a TPM is there. Nil: look for
	// /dev/tpmrm0 or /dev/tpm0 under Root.
	TPMPresent func() bool
	// Run runs a program and returns its combined output. Nil runs it for
	// real with DEBIAN_FRONTEND=noninteractive.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
	// LookPath finds a program. Nil: exec.LookPath.
	LookPath func(string) (string, error)
	// ModuleDirs are where relative module names are looked up, relative
	// to Root. Nil: libpam's directories for this architecture.
	ModuleDirs []string
	// Wtmp is the login record file monitor mode reads (DefaultWtmp).
	Wtmp string
	// Supported overrides the platform check (tests of the Windows text).
	Supported *bool
	// ReloadSSHD makes a running sshd read its configuration again after
	// the agent changed its drop-in. Nil: SIGHUP to the pid in sshd's
	// PidFile.
	ReloadSSHD func(ctx context.Context) error
	// CredProv, on Windows, is the credential provider the control
	// switches on and off instead of PAM (credprov.go).
	CredProv *CredProvOptions
}

// Control is the login-mfa control. Safe for concurrent use.
type Control struct {
	opt  Options
	fsys fs.FS

	mu          sync.Mutex
	mode        mamoriv1.Mode
	named       bool
	settings    Settings
	setErr      error
	lastApply   string // what Apply did last, for evidence
	applyErr    error
	wtmpOff     int64
	wtmpInit    bool
	wouldRefuse int
	// Windows monitor mode (winlogonscan.go): the Security log's last
	// 4624 record read, unreadable events, the last read error.
	logonOff  uint64
	logonInit bool
	logonBad  int
	logonErr  error
}

// New returns the control.
func New(opt Options) *Control {
	if opt.Root == "" {
		opt.Root = "/"
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Wtmp == "" {
		opt.Wtmp = DefaultWtmp
	}
	if opt.ModuleDirs == nil {
		opt.ModuleDirs = moduleDirs(runtime.GOARCH)
	}
	if opt.Run == nil {
		opt.Run = runCommand
	}
	if opt.LookPath == nil {
		opt.LookPath = lookPath
	}
	s, _ := ParseSettings(nil)
	return &Control{opt: opt, fsys: os.DirFS(opt.Root), settings: s}
}

// Name is "login-mfa".
func (c *Control) Name() string { return policy.ControlLoginMFA }

func (c *Control) supported() bool {
	if c.opt.Supported != nil {
		return *c.opt.Supported
	}
	return platformSupported || c.opt.CredProv != nil
}

// moduleDirs are libpam's module directories (relative to the root) for
// an architecture: Debian's multiarch directory, then the RHEL and
// generic ones.
func moduleDirs(goarch string) []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu"}[goarch]
	var d []string
	if triplet != "" {
		d = append(d, "usr/lib/"+triplet+"/security", "lib/"+triplet+"/security")
	}
	return append(d, "usr/lib64/security", "lib64/security", "usr/lib/security", "lib/security")
}

// Apply reads the settings and brings PAM in line with the mode.
func (c *Control) Apply(ctx context.Context, p *mamoriv1.ControlPolicy) error {
	s, serr := ParseSettings(p.GetSettings())
	c.mu.Lock()
	c.named, c.mode, c.settings, c.setErr = p != nil, p.GetMode(), s, serr
	c.mu.Unlock()
	if !c.supported() {
		return nil
	}
	if serr != nil {
		return serr
	}
	var did string
	var err error
	if c.opt.CredProv != nil {
		did, err = c.applyCredProv(ctx, p, s)
		c.mu.Lock()
		c.lastApply, c.applyErr = did, err
		c.mu.Unlock()
		if p != nil && p.GetMode() == mamoriv1.Mode_MODE_MONITOR {
			c.scanWinLogons(ctx)
		}
		return err
	}
	switch {
	case s.Manual:
		did = "manual: PAM is not changed by the agent"
	case p != nil && p.GetMode() == mamoriv1.Mode_MODE_ENFORCE:
		did, err = c.enable(ctx, s)
		if slices.Contains(s.Services, "sshd") {
			sdid, serr := c.enableSSHD(ctx)
			did, err = joinDid(did, sdid), errors.Join(err, serr)
		}
	default:
		did, err = c.disable(ctx)
		sdid, serr := c.disableSSHD(ctx)
		did, err = joinDid(did, sdid), errors.Join(err, serr)
	}
	c.mu.Lock()
	c.lastApply, c.applyErr = did, err
	c.mu.Unlock()
	if p != nil && p.GetMode() == mamoriv1.Mode_MODE_MONITOR {
		c.scanLogins(ctx)
	}
	return err
}

// Status reports what the PAM configuration holds now.
func (c *Control) Status(ctx context.Context) (*mamoriv1.ControlStatus, error) {
	if !c.supported() {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE,
			Evidence: map[string]string{"platform": runtime.GOOS}}
		control.SetDetail(st, "detail.loginmfa.windows")
		return st, nil
	}
	if c.opt.CredProv != nil {
		return c.statusCredProv(ctx), nil
	}
	c.mu.Lock()
	named, mode, s, setErr, did, would, applyErr := c.named, c.mode, c.settings, c.setErr, c.lastApply, c.wouldRefuse, c.applyErr
	c.mu.Unlock()
	if !named {
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE}
		control.SetDetail(st, "detail.loginmfa.not-named")
		return st, nil
	}
	ev := map[string]string{"services": strings.Join(s.Services, ",")}
	if did != "" {
		ev["pam_config"] = did
	}
	r := c.check(s, ev)
	if c.opt.Users != nil {
		ev["enrolled_users"] = strconv.Itoa(len(c.opt.Users()))
	} else {
		ev["enrolled_users"] = "unknown (verifier not running)"
	}
	ev["tpm_present"] = strconv.FormatBool(c.tpmPresent())
	c.bundleEvidence(ev)
	var grace []string
	if c.opt.GraceUsers != nil {
		grace = c.opt.GraceUsers()
		ev["grace_logins"] = strconv.Itoa(len(grace))
	}
	if mode == mamoriv1.Mode_MODE_MONITOR {
		ev["would_refuse"] = strconv.Itoa(would)
		st := &mamoriv1.ControlStatus{State: mamoriv1.ControlState_CONTROL_STATE_MONITORING, Evidence: ev}
		control.SetDetail(st, "detail.loginmfa.monitor", strconv.Itoa(would))
		if err := errors.Join(setErr, applyErr); err != nil {
			// A bad setting, or a revert that failed: PAM may still
			// require the module although the policy says monitor.
			// The error text stays English.
			st.State = mamoriv1.ControlState_CONTROL_STATE_FAILED
			control.SetDetail(st, "detail.loginmfa.monitor-error", err.Error(), strconv.Itoa(would))
		}
		return st, nil
	}
	var problems []control.Detail
	state := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	worse := func(st mamoriv1.ControlState, why control.Detail) {
		problems = append(problems, why)
		if st == mamoriv1.ControlState_CONTROL_STATE_FAILED || state == mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
			state = st
		}
	}
	if setErr != nil {
		worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.error", setErr.Error())) // English error text
	}
	if applyErr != nil && setErr == nil {
		worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.error", applyErr.Error()))
	}
	if len(r.uncovered) > 0 {
		list := strings.Join(r.uncovered, ", ")
		if s.Manual || c.method() == methodNone {
			worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.uncovered-manual", list))
		} else {
			worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.uncovered", list))
		}
	}
	if len(r.broken) > 0 {
		worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.broken", strings.Join(r.broken, ", ")))
	}
	for _, p := range r.moduleProblems {
		worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.module-problem", p)) // English
	}
	if r.noExpected {
		worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.no-module-sha"))
	}
	switch {
	case c.opt.Users == nil:
		worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.verifier-down"))
	case len(c.opt.Users()) == 0:
		worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.no-users"))
	}
	if len(grace) > 0 {
		shown := grace
		if len(shown) > 10 {
			shown = shown[:10]
		}
		worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.grace",
			strconv.Itoa(len(grace)), strings.Join(shown, ", ")))
	}
	if slices.Contains(s.Services, "sshd") {
		sr := c.checkSSHD(ctx)
		switch {
		case !sr.installed:
			ev["sshd.config"] = "sshd not installed"
		case sr.stopped:
			ev["sshd.config"] = "sshd not running (no /run/sshd); checked again next round"
		case sr.err != nil:
			ev["sshd.config"] = "error: " + sr.err.Error()
			worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.sshd-unknown", sr.err.Error()))
		default:
			ev["sshd.authentication_methods"] = sr.methods
			ev["sshd.drop_in"] = strconv.FormatBool(sr.dropIn)
			if len(sr.bypass) > 0 {
				list := strings.Join(first(sr.bypass, 5), "; ")
				ev["sshd.bypass"] = list
				if s.Manual {
					worse(mamoriv1.ControlState_CONTROL_STATE_DEGRADED, control.D("detail.loginmfa.sshd-bypass-manual", list))
				} else {
					worse(mamoriv1.ControlState_CONTROL_STATE_FAILED, control.D("detail.loginmfa.sshd-bypass", list))
				}
			}
		}
	}
	st := &mamoriv1.ControlStatus{State: state, Evidence: ev}
	control.SetDetail(st, "detail.loginmfa.enforced")
	if len(problems) > 0 {
		control.Join(problems).Apply(st)
	}
	return st, nil
}

type checkResult struct {
	uncovered      []string
	broken         []string
	moduleProblems []string
	noExpected     bool
	covered        int
}

// check applies the stack rule to every service and checks the module
// files; evidence goes into ev.
func (c *Control) check(s Settings, ev map[string]string) checkResult {
	var r checkResult
	modules := map[string]bool{}
	for _, svc := range s.Services {
		key := "service." + svc
		st, err := LoadStack(c.fsys, svc)
		if err != nil {
			ev[key] = "error: " + err.Error()
			r.uncovered = append(r.uncovered, svc+" (unreadable)")
			continue
		}
		if len(st.Problems) > 0 {
			// libpam fails every login through such a line; the stack
			// is broken, not covered, whatever the search says.
			ev[key] = "broken: " + strings.Join(first(st.Problems, 5), "; ")
			r.broken = append(r.broken, svc+" ("+st.Problems[0]+")")
			continue
		}
		v := Evaluate(st.Entries)
		via := ""
		if path.Base(st.File) != svc {
			via = " (no file: PAM uses " + path.Base(st.File) + ")"
		}
		switch {
		case v.Required:
			ev[key] = "required" + via
			r.covered++
		case v.Present:
			ev[key] = "not required" + via + ": " + v.Bypass
			r.uncovered = append(r.uncovered, svc)
		default:
			ev[key] = "absent" + via
			r.uncovered = append(r.uncovered, svc)
		}
		for _, e := range st.Entries {
			if e.Mamori() {
				modules[e.Module] = true
			}
		}
	}
	want, from, err := c.expectedHashes(s)
	if err != nil {
		ev["module.expected_error"] = err.Error()
	}
	if len(want) == 0 {
		r.noExpected = true
	} else {
		ev["module.expected_sha256"] = strings.Join(want, ",")
		ev["module.expected_from"] = from
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for m := range modules {
			if !yield(m) {
				return
			}
		}
	})
	for i, m := range names {
		k := "module"
		if i > 0 {
			k = "module." + strconv.Itoa(i)
		}
		p, sum, err := c.hashModule(m)
		ev[k+".path"] = "/" + p
		if err != nil {
			ev[k+".sha256"] = "error: " + err.Error()
			r.moduleProblems = append(r.moduleProblems, fmt.Sprintf("pam_mamori.so (%s) unreadable: %v — PAM refuses every login through it", m, err))
			continue
		}
		ev[k+".sha256"] = sum
		if len(want) > 0 && !slices.Contains(want, sum) {
			r.moduleProblems = append(r.moduleProblems, fmt.Sprintf("/%s has SHA-256 %s, not the expected one (reinstall mamori-agent)", p, sum[:12]))
		}
	}
	return r
}

// joinDid puts two "what Apply did" texts together.
func joinDid(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

func first(s []string, n int) []string { return s[:min(len(s), n)] }

// expectedHashes are the policy's module_sha256, else the package's
// record.
func (c *Control) expectedHashes(s Settings) ([]string, string, error) {
	if len(s.Hashes) > 0 {
		return s.Hashes, "policy", nil
	}
	b, err := readLimitedN(c.fsys, strings.TrimPrefix(HashFile, "/"), 4096)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", HashFile, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || !sha256RE.MatchString(strings.ToLower(f[0])) {
		return nil, "", fmt.Errorf("%s does not start with a hex SHA-256", HashFile)
	}
	return []string{strings.ToLower(f[0])}, HashFile, nil
}

// hashModule resolves a module name as libpam would and hashes the file.
func (c *Control) hashModule(m string) (string, string, error) {
	var p string
	if strings.HasPrefix(m, "/") {
		p = path.Clean(strings.TrimLeft(m, "/"))
	} else {
		// libpam prefixes one directory (DEFAULT_MODULE_PATH) and never
		// searches: the platform's module directory is the first of
		// ModuleDirs that exists; a module elsewhere is not loaded.
		p = path.Join(c.opt.ModuleDirs[0], m)
		for _, d := range c.opt.ModuleDirs {
			if fi, err := fs.Stat(c.fsys, d); err == nil && fi.IsDir() {
				p = path.Join(d, m)
				break
			}
		}
	}
	if !fs.ValidPath(p) {
		return p, "", fmt.Errorf("%q is not a usable path", m)
	}
	f, err := c.fsys.Open(p)
	if err != nil {
		return p, "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 64<<20)); err != nil {
		return p, "", err
	}
	return p, hex.EncodeToString(h.Sum(nil)), nil
}

func readLimitedN(fsys fs.FS, name string, n int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

func (c *Control) tpmPresent() bool {
	if c.opt.TPMPresent != nil {
		return c.opt.TPMPresent()
	}
	for _, d := range []string{"dev/tpmrm0", "dev/tpm0"} {
		if _, err := fs.Stat(c.fsys, d); err == nil {
			return true
		}
	}
	return false
}

// scanLogins emits mfa_would_refuse for new wtmp logins of users with no
// enrolled second factor. The first scan only notes where wtmp ends: the
// control reports logins from the agent's start on.
func (c *Control) scanLogins(ctx context.Context) {
	f, err := os.Open(filepath.Join(c.opt.Root, strings.TrimPrefix(c.opt.Wtmp, "/")))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.opt.Log.WarnContext(ctx, "login-mfa: cannot read login records", "file", c.opt.Wtmp, "error", err)
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	c.mu.Lock()
	off, initd := c.wtmpOff, c.wtmpInit
	c.mu.Unlock()
	size := fi.Size() - fi.Size()%UtmpSize
	switch {
	case !initd:
		c.mu.Lock()
		c.wtmpOff, c.wtmpInit = size, true
		c.mu.Unlock()
		return
	case size < off: // rotated or truncated
		off = 0
	}
	const maxRead = 4 << 20
	if size-off > maxRead {
		off = size - maxRead
	}
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return
	}
	var enrolled []string
	if c.opt.Users != nil {
		enrolled = c.opt.Users()
	}
	// One record at a time, so that an event that cannot be recorded is
	// retried next round from that record, and none is reported twice.
	done, count := int64(0), 0
	for done+UtmpSize <= int64(len(b)) {
		logins, _ := ParseWtmp(b[done : done+UtmpSize])
		if len(logins) == 1 && !slices.Contains(enrolled, logins[0].User) {
			l := logins[0]
			reason := "not_enrolled"
			if c.opt.Users == nil {
				reason = "verifier_not_running"
			}
			attrs := map[string]string{"user": l.User, "line": l.Line, "host": l.Host,
				"login_at": l.At.Format(time.RFC3339), "reason": reason, "source": "wtmp"}
			if err := c.opt.Emitter.Emit(ctx, policy.ControlLoginMFA, KindWouldRefuse, attrs); err != nil {
				c.opt.Log.ErrorContext(ctx, "login-mfa: event not recorded; retrying next round", "error", err)
				break
			}
			count++
		}
		done += UtmpSize
	}
	c.mu.Lock()
	c.wtmpOff = off + done
	c.wouldRefuse += count
	c.mu.Unlock()
}

// bundleEvidence adds the MFA bundle version held, when known.
func (c *Control) bundleEvidence(ev map[string]string) {
	if c.opt.BundleVersion == nil {
		return
	}
	if v := c.opt.BundleVersion(); v != "" {
		ev["mfa_bundle"] = v
	} else {
		ev["mfa_bundle"] = "none"
	}
}
