// Package mfa verifies login second factors on the terminal, offline.
//
// The server sends each terminal an MFA bundle — the TOTP secrets and
// recovery code hashes of the users its policy allows — sealed with HPKE to
// this terminal's key (internal/mfabundle). The agent keeps the bundle
// exactly as it arrived, sealed, next to the key in a root-only directory,
// and opens it in memory; logins are verified here, so they keep working
// while the server is unreachable.
//
// Every verification follows the same rules: constant-time comparison,
// ±1 time step, a step once accepted is never accepted again for that user
// on this terminal (persisted before the answer), lock-out after
// MaxFailures consecutive failures that no crash makes the verifier forget
// (journal.go says what is on disk before which answer), one aggregate for
// names the terminal does not know, and no code or secret in any log,
// event or error. Every attempt is an event.
//
// Recovery codes live in the break-glass file (see breakglass.go), the
// one place both the agent and pam_mamori.so consume them, so a code used
// while the agent was down is used here too.
package mfa

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Event kinds.
const (
	KindSuccess      = "mfa_success"
	KindFailure      = "mfa_failure"
	KindLockout      = "mfa_lockout"
	KindRecoveryUsed = "mfa_recovery_used"
	KindTempCodeUsed = "mfa_temp_code_used"
	KindGraceLogin   = "mfa_grace_login"
	KindUnlocked     = "mfa_unlocked"
)

// Files in the MFA directory (0700, root).
const (
	keyFile        = "bundle.key"    // HPKE private key in the clear (older agents; sealed now: sealkey.go)
	bundleFile     = "bundle.sealed" // the bundle as the server sealed it
	stateFile      = "verify.json"   // replay steps and failure counts
	BreakGlassFile = "breakglass"    // hashed recovery codes (pam_mamori.so reads it)
)

// Verdict is the answer to one attempt.
type Verdict uint8

// Verdicts, as sent over the local socket (agent/localapi).
const (
	Allow  Verdict = 0
	Deny   Verdict = 1
	Locked Verdict = 2
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Locked:
		return "locked"
	}
	return "deny"
}

// Attempt is one login's second factor. Code is never logged.
type Attempt struct {
	User, Service, RHost string
	Code                 string
	// Method is what the module prompted for (TPM PIN: tpmpin.go).
	Method Method
	// Gone, when set, reports whether the asker has stopped waiting for
	// the answer (pam_mamori.so's timeout passed while the agent was
	// frozen). A right code found then is spent but recorded as
	// mfa_failure reason=timed_out, never as a login. nil: always there.
	Gone func() bool
}

// ReasonTimedOut: the code was right but the asker had given up.
const ReasonTimedOut = "timed_out"

// Config configures a Verifier.
type Config struct {
	// Dir holds the key, the sealed bundle, the verification state and the
	// break-glass file. Created 0700.
	Dir string
	// Events receives every attempt (the durable spool in the agent).
	Events control.Emitter
	Log    *slog.Logger
	Now    func() time.Time
	// MaxFailures consecutive failures lock a user out for LockoutFor,
	// doubling with each further lock-out up to MaxLockout.
	MaxFailures int
	LockoutFor  time.Duration
	MaxLockout  time.Duration
	// Sealer seals the bundle key (seal.go); nil: a key file in Dir.
	Sealer Sealer
	// PINs are the TPM-bound PIN keys (tpmpin.go); nil: no PIN method.
	PINs *PINKeys
}

// DefaultConfig: 5 failures, 1 minute doubling to 1 hour.
func DefaultConfig() Config {
	return Config{MaxFailures: 5, LockoutFor: time.Minute, MaxLockout: time.Hour}
}

// Validate checks c.
func (c Config) Validate() error {
	if c.Dir == "" || c.Events == nil {
		return errors.New("mfa: dir and events are required")
	}
	if c.MaxFailures < 1 || c.LockoutFor <= 0 || c.MaxLockout < c.LockoutFor {
		return errors.New("mfa: lock-out settings must be positive (start from DefaultConfig)")
	}
	return nil
}

type userState struct {
	LastStep    int64     `json:"last_step,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	Lockouts    int       `json:"lockouts,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// UnlockGen is the last unlock counter from the server applied here.
	UnlockGen int64 `json:"unlock_gen,omitempty"`
	// UsedTemp are the temporary codes used on this terminal: ID →
	// expiry. An entry is kept until its code has expired, whatever the
	// bundles say, so a code never works twice here.
	UsedTemp map[string]time.Time `json:"used_temp,omitempty"`
	// GraceLoginAt is the last login without a factor under grace.
	GraceLoginAt time.Time `json:"grace_login_at,omitzero"`

	// runSeq is the journal record of the first failure of the user's
	// current run, which must be durable before any later failure of
	// the run is answered (journal.go); 0: on disk already.
	runSeq uint64
}

// Verifier holds the opened bundle and verifies attempts.
type Verifier struct {
	cfg    Config
	log    *slog.Logger
	key    hpke.PrivateKey
	pub    []byte
	bglass *BreakGlass

	mu     sync.Mutex
	bundle *mamoriv1.MFABundle // nil until the first bundle
	state  map[string]*userState
	// unknown is the one aggregate of failures for user names this
	// terminal does not know (never stored per name).
	unknown *userState
	// The state's journal (journal.go): the open file, the sequence
	// number of its last record and how many records it holds.
	journal    *os.File
	seq        uint64
	journalLen int
	// Group commit (journal.go): records up to synced are on disk; a
	// failed fsync that could not be made up for reaches syncFailed;
	// syncing while the syncer runs; cond (on mu) wakes those waiting.
	synced, syncFailed uint64
	syncing, closed    bool
	cond               *sync.Cond
	// bgReportedSize is the size breakglass.used had when every use in it
	// was reported (ReportBreakGlass).
	bgReportedSize int64
	// pinLockedOut: the last checkPIN met the TPM's DA lockout.
	pinLockedOut bool
}

// Open loads or creates the key, and opens the stored bundle if any.
// deviceID is the enrolled device's ID ("" before enrolment).
func Open(cfg Config, deviceID string) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	// Windows ignores the mode: the directory gets a protected DACL
	// (SYSTEM, Administrators) its files inherit (lock_windows.go).
	if err := protectDir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	v := &Verifier{cfg: cfg, log: cfg.Log, state: map[string]*userState{},
		bglass: &BreakGlass{Path: filepath.Join(cfg.Dir, BreakGlassFile)}}
	v.cond = sync.NewCond(&v.mu)
	if err := v.loadKey(); err != nil {
		return nil, err
	}
	clean, err := v.loadState()
	if err != nil {
		return nil, err
	}
	if !clean {
		// Records answered before their fsync may be lost (journal.go).
		if n := v.chargeUncleanStop(); n > 0 {
			v.log.Warn("mfa: the last stop was not clean; users whose run of failed attempts had started are counted as one failure from lock-out",
				"users", n)
		}
	}
	// On disk before any attempt: not clean any more, and the charge.
	if err := v.saveState(); err != nil {
		v.journal.Close()
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if deviceID != "" {
		if sealed, err := os.ReadFile(filepath.Join(cfg.Dir, bundleFile)); err == nil {
			b, err := mfabundle.Open(v.key, deviceID, sealed)
			if err != nil {
				v.log.Error("stored mfa bundle does not open; waiting for a new one", "error", err)
			} else {
				v.bundle = b
				v.applyBundleState(context.Background())
			}
		}
	}
	// Recovery codes pam_mamori.so used on its own while the agent was
	// down are reported now.
	v.mu.Lock()
	v.reportBreakGlass(context.Background())
	v.mu.Unlock()
	return v, nil
}

// PublicKey is sent in every report.
func (v *Verifier) PublicKey() []byte { return v.pub }

// BundleVersion is the version held, "" if none.
func (v *Verifier) BundleVersion() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bundle.GetVersion()
}

// TakeBundle opens a bundle from the server, stores it sealed and puts it
// in force; the break-glass file gets the bundle's recovery codes minus
// those used on this terminal.
func (v *Verifier) TakeBundle(ctx context.Context, deviceID string, sb *mamoriv1.SealedMFABundle) error {
	b, err := mfabundle.Open(v.key, deviceID, sb.GetSealed())
	if err != nil {
		return err
	}
	if b.Version != sb.GetVersion() {
		return errors.New("mfa bundle: version differs from the sealed one")
	}
	for _, u := range b.Users {
		if _, err := params(u); err != nil {
			return fmt.Errorf("mfa bundle: user %s: %w", u.User, err)
		}
	}
	if err := atomicfile.Write(filepath.Join(v.cfg.Dir, bundleFile), sb.GetSealed(), 0o600); err != nil {
		return fmt.Errorf("mfa: store bundle: %w", err)
	}
	if err := v.bglass.Replace(b.Users); err != nil {
		return fmt.Errorf("mfa: break-glass file: %w", err)
	}
	v.mu.Lock()
	v.bundle = b
	v.applyBundleState(ctx)
	v.mu.Unlock()
	v.log.InfoContext(ctx, "mfa bundle in force", "version", b.Version, "users", len(b.Users),
		"temp_codes", len(b.TempCodes), "unlocks", len(b.Unlocks))
	return nil
}

func params(u *mamoriv1.MFAUserSecret) (totp.Params, error) {
	p := totp.Params{Algorithm: totp.Algorithm(u.Algorithm), Digits: int(u.Digits),
		Period: time.Duration(u.PeriodSeconds) * time.Second, Skew: 1}
	return p, p.Validate()
}

// Verify checks one attempt and records it as an event. It never says why
// a code was refused to the caller beyond the verdict.
func (v *Verifier) Verify(ctx context.Context, a Attempt) Verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	attrs := map[string]string{"user": a.User, "service": a.Service, "rhost": a.RHost}
	st := v.state[a.User]
	if st == nil {
		// Unlocks issued before this user's first attempt here clear
		// nothing.
		st = &userState{UnlockGen: v.unlockGen(a.User)}
	}
	fleet := v.fleet(a.User)
	if now.Before(st.LockedUntil) {
		attrs["reason"] = "locked_out"
		v.emit(ctx, KindFailure, attrs)
		return Locked
	}
	if fleet.GetLockedUntil() != nil && now.Before(fleet.GetLockedUntil().AsTime()) {
		// Locked out on another terminal (issue #14 item 9): guesses do
		// not multiply with the number of terminals.
		attrs["reason"] = "locked_out"
		attrs["fleet"] = "true"
		v.emit(ctx, KindFailure, attrs)
		return Locked
	}
	method, codeID, reason, ok := v.check(ctx, a, st, now)
	attrs["method"] = method
	if codeID != "" {
		attrs["code_id"] = codeID
	}
	if reason != "" {
		attrs["reason"] = reason
	}
	if ok {
		st.Failures = 0
		st.Lockouts = 0
		st.LockedUntil = time.Time{}
		st.runSeq = 0
		v.state[a.User] = st
		// What the events say, read before saveUser lets other attempts
		// in while it waits for the fsync.
		step := strconv.FormatInt(st.LastStep, 10)
		graceUntil := v.bundle.GetGraceUntil().AsTime().UTC().Format(time.RFC3339)
		if err := v.saveUser(a.User); err != nil {
			// The step could not be recorded: refusing is the only way
			// to keep the code from being accepted twice.
			v.log.ErrorContext(ctx, "mfa state not saved; refusing the login", "error", err)
			attrs["reason"] = "state_not_saved"
			v.emit(ctx, KindFailure, attrs)
			return Deny
		}
		if a.Gone != nil && a.Gone() {
			// The module refused the login already (its timeout): the
			// code is spent (its step saved, a one-time code consumed)
			// and the record says so. A one-time code's ID goes with it,
			// so the server consumes the code fleet-wide all the same.
			attrs["reason"] = ReasonTimedOut
			v.emit(ctx, KindFailure, attrs)
			if method == methodRecovery && codeID != "" {
				if err := v.bglass.markReported(codeID); err != nil {
					v.log.ErrorContext(ctx, "break-glass use not marked reported (it may be reported twice)", "error", err)
				}
			}
			return Deny
		}
		kind := KindSuccess
		if method == methodTOTP {
			// The step accepted: the server passes it to the user's other
			// terminals, which then refuse this code too.
			attrs["step"] = step
		}
		switch method {
		case methodRecovery:
			kind = KindRecoveryUsed
		case methodTempCode:
			kind = KindTempCodeUsed
		case methodGrace:
			kind = KindGraceLogin
			attrs["grace_until"] = graceUntil
		}
		if err := v.emitErr(ctx, kind, attrs); err != nil {
			// No login without its record: the spool could not take the
			// event even from its reserve (a full disk for a long time).
			// The code is spent; the refusal is counted by the spool and
			// reported once there is room (docs/mfa.md, "A full disk").
			// Break-glass recovery codes through pam_mamori.so still work
			// when the agent is down.
			v.log.ErrorContext(ctx, "mfa login could not be recorded; refusing it", "error", err)
			attrs["reason"] = "event_not_recorded"
			v.emit(ctx, KindFailure, attrs)
			return Deny
		}
		if method == methodRecovery && codeID != "" {
			// Reported: ReportBreakGlass must not report it again.
			if err := v.bglass.markReported(codeID); err != nil {
				v.log.ErrorContext(ctx, "break-glass use not marked reported (it may be reported twice)", "error", err)
			}
		}
		return Allow
	}
	if !v.knows(a.User, now) {
		// A name this terminal does not know has nothing to guess: one
		// aggregate counts such failures, no entry per name (issue #21
		// item 7), and nobody is locked out by them. No "failures"
		// attribute: the server counts those per user, fleet-wide.
		v.pinLockedOut = false
		v.unknown.Failures = min(v.unknown.Failures+1, maxUnknownFailures)
		if _, err := v.record(""); err != nil {
			v.log.ErrorContext(ctx, "mfa state not saved", "error", err)
		}
		v.emit(ctx, KindFailure, attrs)
		return Deny
	}
	first := st.Failures == 0
	st.Failures++
	attrs["failures"] = fmt.Sprint(st.Failures)
	verdict := Deny
	// TPM PIN (tpmpin.go): the TPM's dictionary-attack lockout is a
	// lock-out of its own, reported as such.
	if v.pinLockedOut {
		v.pinLockedOut = false
		verdict = Locked
		attrs["reason"] = "tpm_lockout"
	}
	lockout := false
	if st.Failures+int(fleet.GetFailures()) >= v.cfg.MaxFailures {
		// The other terminals' failures of this user count too.
		d := v.cfg.LockoutFor << min(st.Lockouts, 20)
		d = min(d, v.cfg.MaxLockout)
		st.Lockouts++
		st.Failures = 0
		st.LockedUntil = now.Add(d)
		verdict = Locked
		lockout = true
	}
	v.state[a.User] = st
	la := map[string]string{"user": a.User, "service": a.Service, "rhost": a.RHost}
	if now.Before(st.LockedUntil) {
		la["until"] = st.LockedUntil.UTC().Format(time.RFC3339)
	} else { // TPM PIN: the TPM's lockout, not ours
		la["reason"] = "tpm_lockout"
	}
	// Written before the answer; on disk before it only when it starts
	// the run or locks the user out — else once the run's first failure
	// is (journal.go).
	seq, err := v.record(a.User)
	if err == nil {
		need := st.runSeq
		switch {
		case lockout:
			need, st.runSeq = seq, 0
		case first:
			need, st.runSeq = seq, seq
		}
		err = v.waitDurable(need)
	}
	if err != nil {
		v.log.ErrorContext(ctx, "mfa state not saved", "error", err)
	}
	v.emit(ctx, KindFailure, attrs)
	if verdict == Locked {
		v.emit(ctx, KindLockout, la)
	}
	return verdict
}

// maxUnknownFailures caps the unknown-user aggregate.
const maxUnknownFailures = 1 << 30

// knows says whether user is one this terminal could let in: named in the
// bundle (factors or a temporary code), under grace, or with a PIN key
// here. v.mu is held.
func (v *Verifier) knows(user string, now time.Time) bool {
	if v.user(user) != nil || v.graceApplies(user, now) || v.cfg.PINs.Enrolled(user) {
		return true
	}
	for _, c := range v.bundle.GetTempCodes() {
		if c.GetUser() == user {
			return true
		}
	}
	return false
}

// Methods as events name them.
const (
	methodTOTP     = "totp"
	methodRecovery = "recovery"
	methodTempCode = "temp_code"
	methodGrace    = "grace"
	methodPIN      = "pin"
)

// check returns the method tried, the ID of a one-time code it used, why
// it refused (for the event; never a code) and whether it passed. It
// updates st (TOTP step, used temporary code, grace login) on success.
func (v *Verifier) check(ctx context.Context, a Attempt, st *userState, now time.Time) (method, codeID, reason string, ok bool) {
	norm := mfabundle.NormalizeCode(a.Code)
	// TPM PIN (tpmpin.go); a recovery code at the PIN prompt is checked
	// as a recovery code below (PINs never have that shape).
	if a.Method == MethodPIN && !mfabundle.LooksLikeRecoveryCode(norm) {
		if !v.methodAllowed(policy.MFAMethodTPMPIN) {
			return methodPIN, "", "method_not_allowed", false
		}
		m, ok := v.checkPIN(ctx, a)
		return m, "", "", ok
	}
	if mfabundle.LooksLikeRecoveryCode(norm) {
		h, err := v.bglass.consume(a.User, norm)
		if err != nil {
			v.log.ErrorContext(ctx, "break-glass file unusable", "error", err)
		}
		if h == "" {
			return methodRecovery, "", "", false
		}
		return methodRecovery, mfabundle.CodeID(h), "", true
	}
	if mfabundle.LooksLikeTempCode(norm) {
		id, reason := v.checkTempCode(a.User, norm, st, now)
		return methodTempCode, id, reason, reason == ""
	}
	u := v.user(a.User)
	if u == nil {
		if v.graceApplies(a.User, now) {
			st.GraceLoginAt = now
			return methodGrace, "", "", true
		}
		return methodTOTP, "", "not_enrolled", false
	}
	if !v.methodAllowed(policy.MFAMethodTOTP) {
		return methodTOTP, "", "method_not_allowed", false
	}
	p, err := params(u)
	if err != nil {
		return methodTOTP, "", "bad_parameters", false
	}
	// A step accepted on another terminal is spent here too.
	last := max(st.LastStep, v.fleet(a.User).GetLastStep())
	step, err := p.Verify(u.TotpSecret, norm, now, last)
	if errors.Is(err, totp.ErrReplayed) {
		// Said in the event only; the module hears "deny" as for any
		// wrong code.
		return methodTOTP, "", "code_used", false
	}
	if err != nil {
		return methodTOTP, "", "", false
	}
	st.LastStep = step
	return methodTOTP, "", "", true
}

// fleet is what the other terminals reported about the user, from the
// bundle in force (nil: nothing).
func (v *Verifier) fleet(name string) *mamoriv1.MFALoginState {
	for _, l := range v.bundle.GetLogins() {
		if l.User == name {
			return l
		}
	}
	return nil
}

func (v *Verifier) user(name string) *mamoriv1.MFAUserSecret {
	for _, u := range v.bundle.GetUsers() {
		if u.User == name {
			return u
		}
	}
	return nil
}

func (v *Verifier) emit(ctx context.Context, kind string, attrs map[string]string) {
	if err := v.emitErr(ctx, kind, attrs); err != nil {
		v.log.ErrorContext(ctx, "mfa event not recorded", "kind", kind, "error", err)
	}
}

func (v *Verifier) emitErr(ctx context.Context, kind string, attrs map[string]string) error {
	return v.cfg.Events.Emit(ctx, policy.ControlLoginMFA, kind, attrs)
}

// ReportBreakGlass reports, as mfa_recovery_used events with via=break-glass,
// the recovery codes pam_mamori.so used from the break-glass file while the
// agent could not answer (who, service, remote host and when, as the module
// wrote them), once each. Open calls it; the agent calls it every round, so a
// use during a hang of the socket is reported too.
func (v *Verifier) ReportBreakGlass(ctx context.Context) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reportBreakGlass(ctx)
}

func (v *Verifier) reportBreakGlass(ctx context.Context) {
	// Every round calls this; the list only grows, so an unchanged size
	// means nothing new to read.
	fi, err := os.Stat(v.bglass.Path + ".used")
	if err != nil || fi.Size() == v.bgReportedSize {
		return
	}
	us, err := v.bglass.unreported()
	if err != nil {
		v.log.ErrorContext(ctx, "break-glass uses not readable", "error", err)
		return
	}
	var done []string
	for _, u := range us {
		id := mfabundle.CodeID(u.Hash)
		attrs := map[string]string{"user": u.User, "service": u.Service, "rhost": u.RHost,
			"method": methodRecovery, "code_id": id, "via": "break-glass"}
		if !u.At.IsZero() {
			attrs["used_at"] = u.At.Format(time.RFC3339)
		}
		if err := v.emitErr(ctx, KindRecoveryUsed, attrs); err != nil {
			v.log.ErrorContext(ctx, "break-glass use not reported yet", "error", err)
			break // kept for the next try
		}
		done = append(done, id)
	}
	if err := v.bglass.markReported(done...); err != nil {
		v.log.ErrorContext(ctx, "break-glass uses not marked reported (they may be reported twice)", "error", err)
		return
	}
	if len(done) == len(us) {
		v.bgReportedSize = fi.Size()
	}
}

// Users lists the users the bundle in force covers.
func (v *Verifier) Users() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var us []string
	for _, u := range v.bundle.GetUsers() {
		us = append(us, u.User)
	}
	return us
}
