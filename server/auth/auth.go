// Package auth holds the server's credentials for people and tools: the
// operator roles and what each may call, and the secret tokens (operator
// API tokens, enrolment tokens) that are shown once and stored hashed.
//
// Operators authenticate to AdminService with an API token rather than a
// client certificate: a token is easy to hand to a helpdesk script, easy to
// revoke, and the TLS server certificate is still verified against the
// pinned CA. The console (a later issue) adds password + TOTP sessions on
// top of the same roles.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Role is an operator's role. Each role includes the rights of the ones
// before it.
type Role int

// Roles, least to most powerful.
const (
	RoleNone Role = iota
	// RoleHelpdesk reads devices, events, fleet and policy.
	RoleHelpdesk
	// RoleOfficer also revokes devices, changes policy and issues
	// enrolment tokens.
	RoleOfficer
	// RoleAdmin also manages operators.
	RoleAdmin
)

// String returns the role's stored name.
func (r Role) String() string {
	switch r {
	case RoleHelpdesk:
		return "helpdesk"
	case RoleOfficer:
		return "officer"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses a stored role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "helpdesk":
		return RoleHelpdesk, nil
	case "officer":
		return RoleOfficer, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: use helpdesk, officer or admin", s)
}

// Allows reports whether r has at least the rights of need.
func (r Role) Allows(need Role) bool { return r >= need && need > RoleNone }

// Operator API token lifetimes (issue 14 item 7): a token made for an
// operator (mamori-server operator, servertest) lasts DefaultOperatorTokenTTL;
// the first admin's, printed at the first start, BootstrapTokenTTL; one
// issued before tokens expired, LegacyTokenGrace from the upgrade.
//
// Named tokens (mamorictl api-token create) last DefaultOperatorTokenTTL
// unless asked for less, and never more than MaxOperatorTokenTTL.
const (
	DefaultOperatorTokenTTL = 90 * 24 * time.Hour
	MaxOperatorTokenTTL     = 90 * 24 * time.Hour
	MinOperatorTokenTTL     = time.Hour
	BootstrapTokenTTL       = 24 * time.Hour
	LegacyTokenGrace        = 30 * 24 * time.Hour
)

// Token prefixes tell a leaked secret's kind at a glance (and let secret
// scanners find them).
const (
	OperatorTokenPrefix   = "mmo_"
	EnrollmentTokenPrefix = "mme_"
)

// Secret is a token in clear text. It never prints itself: logs and errors
// see "[redacted]".
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String implements fmt.Stringer so %v and %s redact too.
func (Secret) String() string { return "[redacted]" }

// Reveal returns the clear text, for the one place that shows it once.
func (s Secret) Reveal() string { return string(s) }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken makes a random token with 160 bits of entropy: the prefix plus
// 32 base32 characters (lower case, no padding, safe on any command line).
func NewToken(prefix string) Secret {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return Secret(prefix + strings.ToLower(b32.EncodeToString(b[:])))
}

// HashToken is how tokens are stored and looked up. A fast hash is right
// here: the tokens are 160-bit random values, not passwords, so there is
// nothing to brute-force.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return sum[:]
}

// WellFormed reports whether s looks like a token of the given prefix, so
// garbage is refused before any lookup.
func WellFormed(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) != len(prefix)+32 {
		return false
	}
	_, err := b32.DecodeString(strings.ToUpper(s[len(prefix):]))
	return err == nil
}
