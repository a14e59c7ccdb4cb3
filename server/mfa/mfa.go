// Package mfa is the server side of multi-factor login: it makes TOTP
// secrets and recovery codes for a user, keeps the secrets sealed under a
// key in the server's data directory, and builds each device's bundle —
// the secrets of the users its policy allows, sealed to the device's HPKE
// key (internal/mfabundle).
package mfa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/atomicfile"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// KeyFile is the MFA key's name in the data directory.
const KeyFile = "mfa.key"

// Issuer is the otpauth issuer authenticator apps show.
const Issuer = "mamori"

// RecoveryCodes is how many one-time codes an enrolment makes.
const RecoveryCodes = 10

// Key seals TOTP secrets at rest (AES-256-GCM, the user name as
// associated data, so a sealed secret cannot be moved to another user).
type Key struct{ aead cipher.AEAD }

// LogValue-safe: a Key never prints its bytes.
func (*Key) String() string { return "[mfa key]" }

// LoadOrCreateKey reads dir/mfa.key, creating a random one (0600) when
// it does not exist. Losing it makes every enrolled secret unreadable:
// back it up with the CA.
func LoadOrCreateKey(dir string) (*Key, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("mfa key: %w", err)
		}
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("mfa key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("mfa key: %w", err)
	}
	return NewKey(b)
}

// NewKey uses 32 raw bytes.
func NewKey(b []byte) (*Key, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("mfa key: %d bytes; want 32", len(b))
	}
	blk, err := aes.NewCipher(b)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Key{aead: a}, nil
}

func (k *Key) seal(user string, secret []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, secret, []byte(user))
}

func (k *Key) open(user string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed secret too short")
	}
	return k.aead.Open(nil, sealed[:n], sealed[n:], []byte(user))
}

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// ValidUser checks a login name the way Debian's adduser does by default.
func ValidUser(u string) error {
	if !userRE.MatchString(u) {
		return fmt.Errorf("user %q: use a login name (lower-case letters, digits, '_', '.', '-'; at most 32)", u)
	}
	return nil
}

// Enrollment is a new user's record and what is shown once.
type Enrollment struct {
	Record        store.MFAUser
	URI           string
	RecoveryCodes []string
}

// Enroll makes a TOTP secret (SHA-1, 6 digits, 30 s) and recovery codes.
func (k *Key) Enroll(user, operatorID string, now time.Time) (Enrollment, error) {
	if err := ValidUser(user); err != nil {
		return Enrollment{}, err
	}
	secret, err := totp.NewSecret()
	if err != nil {
		return Enrollment{}, err
	}
	codes, err := mfabundle.NewRecoveryCodes(RecoveryCodes)
	if err != nil {
		return Enrollment{}, err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	// Each code argon2id-hashed with a salt of its own (issue 14 item 8;
	// mfabundle.HashCodeKDF). The agent, pam_mamori.so and, for the
	// break-glass check while the agent is down, mamori-cp.dll
	// (agent/credprov/src/argon2id.c) verify them. The per-user salt
	// stays: hashes made before keep verifying with it (all three read
	// both) until the user is re-enrolled. docs/security.md.
	hashes := make([]string, len(codes))
	for i, c := range codes {
		if hashes[i], err = mfabundle.HashCodeKDF(c); err != nil {
			return Enrollment{}, err
		}
	}
	p := totp.Default()
	return Enrollment{
		Record: store.MFAUser{
			User: user, SealedSecret: k.seal(user, secret), Algorithm: string(p.Algorithm), Digits: p.Digits,
			PeriodSeconds: int(p.Period / time.Second), RecoverySalt: salt, RecoveryHashes: hashes,
			CreatedAt: now, CreatedBy: operatorID,
		},
		URI:           p.URI(Issuer, user, secret),
		RecoveryCodes: codes,
	}, nil
}

// SettingUsers is the login-mfa policy setting naming the users whose
// secrets a device receives: comma-separated login names, or "*" for
// every enrolled user. Unset: nobody (internal/policy.SettingMFAUsers;
// per-terminal keys users.DEVICE-ID are folded in by the effective
// policy).
const SettingUsers = policy.SettingMFAUsers

// NoBundle is the version of the empty bundle a device gets when it may
// hold no secret at all (no login-mfa control, nobody allowed, or not
// attested where the policy requires it): a device that holds a bundle is
// sent an empty one, which deletes what it had.
const NoBundle = "none"

// Access is what one device's effective policy lets it receive
// (internal/policy.MFAAccess, shared with mamorictl).
type Access = policy.MFAAccess

// AccessOf reads an effective policy's login-mfa settings.
func AccessOf(p *mamoriv1.Policy) Access { return policy.MFAAccessOf(p) }

// Why a device gets no secret at all (Access.Refusal).
const (
	RefusedNoControl   = policy.MFARefusedNoControl
	RefusedBadSettings = policy.MFARefusedBadSettings
	RefusedNotAttested = policy.MFARefusedNotAttested
	RefusedNoUsers     = policy.MFARefusedNoUsers
)

// AllowedUsers returns the set the policy allows; nil means everyone
// ("*"). A policy without the control, or naming nobody, allows an empty
// set.
func AllowedUsers(p *mamoriv1.Policy) map[string]bool {
	a := AccessOf(p)
	if a.Control && a.Err == nil && a.All {
		return nil
	}
	m := map[string]bool{}
	if a.Err == nil {
		for _, u := range a.Users {
			m[u] = true
		}
	}
	return m
}

// Version names the bundle a device should hold: it changes with every
// MFA change and every policy change, and names the users the device's
// effective policy allows, so moving a device between groups or naming
// users for one terminal (which keep the policy version) changes its
// bundle too.
func Version(generation int64, p *mamoriv1.Policy) string {
	v := "g" + strconv.FormatInt(generation, 10) + ".p" + strconv.FormatInt(p.GetVersion(), 10)
	a := AccessOf(p)
	users := slices.Clone(a.Users)
	if a.All {
		users = []string{"*"}
	}
	sum := sha256.Sum256([]byte(strings.Join(users, "\n")))
	return v + ".u" + hex.EncodeToString(sum[:6])
}

// BundleData is what the store holds for bundles: every enrolled user,
// the live temporary codes and the unlock counters.
type BundleData struct {
	Users     []store.MFAUser
	TempCodes []store.MFATempCode
	Unlocks   []store.MFAUnlock
	// Logins is the fleet-wide replay and lock-out state (every device).
	Logins []store.MFALoginState
}

// Bundle builds and seals the bundle for one device: the factors of the
// users its policy allows, their unused temporary codes, their unlock
// counters for this device (fleet-wide plus this device's), and the
// policy's methods and grace.
func (k *Key) Bundle(d BundleData, p *mamoriv1.Policy, version, deviceID string, devicePub []byte, now time.Time) (*mamoriv1.SealedMFABundle, error) {
	access := AccessOf(p)
	allowed := AllowedUsers(p)
	ok := access.Allows
	settings, err := policy.LoginMFASettings(p)
	if err != nil {
		return nil, fmt.Errorf("mfa bundle: %w", err)
	}
	b := &mamoriv1.MFABundle{Version: version, DeviceId: deviceID, IssuedAt: timestamppb.New(now), Methods: settings.Methods}
	enrolled := map[string]bool{}
	for _, u := range d.Users {
		if !ok(u.User) {
			continue
		}
		enrolled[u.User] = true
		secret, err := k.open(u.User, u.SealedSecret)
		if err != nil {
			return nil, fmt.Errorf("mfa secret of %s does not open with this server's %s: %w", u.User, KeyFile, err)
		}
		b.Users = append(b.Users, &mamoriv1.MFAUserSecret{
			User: u.User, TotpSecret: secret, Algorithm: u.Algorithm, Digits: int32(u.Digits),
			PeriodSeconds: int32(u.PeriodSeconds), RecoveryCodeHashes: slices.Clone(u.RecoveryHashes), RecoverySalt: u.RecoverySalt,
			TokenSerial: u.TokenSerial,
		})
	}
	for _, c := range d.TempCodes {
		// A code bound to another terminal (a privileged user's) is not
		// sent here at all.
		if ok(c.User) && c.ExpiresAt.After(now) && (c.DeviceID == "" || c.DeviceID == deviceID) {
			b.TempCodes = append(b.TempCodes, &mamoriv1.MFATempCode{User: c.User, Id: c.ID, Salt: c.Salt, Hash: c.Hash,
				ExpiresAt: timestamppb.New(c.ExpiresAt), DeviceId: c.DeviceID})
		}
	}
	unlocks := map[string]int64{}
	var order []string
	for _, u := range d.Unlocks {
		if !ok(u.User) || (u.DeviceID != "" && u.DeviceID != deviceID) {
			continue
		}
		if _, seen := unlocks[u.User]; !seen {
			order = append(order, u.User)
		}
		unlocks[u.User] += u.Generation
	}
	for _, u := range order {
		b.Unlocks = append(b.Unlocks, &mamoriv1.MFAUnlock{User: u, Generation: unlocks[u]})
	}
	b.Logins = fleetLogins(d.Logins, ok, deviceID, now)
	if !settings.GraceUntil.IsZero() {
		b.GraceUntil = timestamppb.New(settings.GraceUntil)
		if allowed == nil {
			b.GraceUsers = []string{"*"}
		} else {
			for u := range allowed {
				if !enrolled[u] {
					b.GraceUsers = append(b.GraceUsers, u)
				}
			}
			slices.Sort(b.GraceUsers)
		}
	}
	sealed, err := mfabundle.Seal(devicePub, deviceID, b)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.SealedMFABundle{Version: version, Sealed: sealed}, nil
}

// Empty seals the empty bundle (version NoBundle) for a device that may
// hold no secret: taking it, the agent deletes the users, codes and
// break-glass lines it had.
func Empty(deviceID string, devicePub []byte, now time.Time) (*mamoriv1.SealedMFABundle, error) {
	b := &mamoriv1.MFABundle{Version: NoBundle, DeviceId: deviceID, IssuedAt: timestamppb.New(now)}
	sealed, err := mfabundle.Seal(devicePub, deviceID, b)
	if err != nil {
		return nil, err
	}
	return &mamoriv1.SealedMFABundle{Version: NoBundle, Sealed: sealed}, nil
}

// fleetLogins folds the devices' replay and lock-out rows into one entry
// per allowed user: the highest step on any device (this one's too: a
// restored terminal learns its own), and the failures and the latest
// lock-out still running on the other devices (this device's own are in
// its verify.json already).
func fleetLogins(rows []store.MFALoginState, allowed func(string) bool, deviceID string, now time.Time) []*mamoriv1.MFALoginState {
	by := map[string]*mamoriv1.MFALoginState{}
	var order []string
	for _, r := range rows {
		if !allowed(r.User) {
			continue
		}
		e := by[r.User]
		if e == nil {
			e = &mamoriv1.MFALoginState{User: r.User}
			by[r.User] = e
			order = append(order, r.User)
		}
		e.LastStep = max(e.LastStep, r.LastStep)
		if r.DeviceID == deviceID {
			continue
		}
		e.Failures += int32(min(r.Failures, 1000))
		if r.LockedUntil.After(now) && (e.LockedUntil == nil || r.LockedUntil.After(e.LockedUntil.AsTime())) {
			e.LockedUntil = timestamppb.New(r.LockedUntil)
		}
	}
	var out []*mamoriv1.MFALoginState
	for _, u := range order {
		if e := by[u]; e.LastStep > 0 || e.Failures > 0 || e.LockedUntil != nil {
			out = append(out, e)
		}
	}
	return out
}
