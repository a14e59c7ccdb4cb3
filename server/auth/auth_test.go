package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTokensAreWellFormedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok := NewToken(EnrollmentTokenPrefix).Reveal()
		if !WellFormed(tok, EnrollmentTokenPrefix) {
			t.Fatalf("%q not well formed", tok)
		}
		if WellFormed(tok, OperatorTokenPrefix) {
			t.Fatalf("enrolment token passes as operator token")
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "mme_", "mme_short", "mme_" + strings.Repeat("1", 32), "MME_" + strings.Repeat("a", 32), "mme_" + strings.Repeat("a", 33)} {
		if WellFormed(bad, EnrollmentTokenPrefix) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewToken(OperatorTokenPrefix)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", s)
	out := buf.String() + fmt.Sprintf("%v %s %+v", s, s, struct{ T Secret }{s})
	if strings.Contains(out, s.Reveal()) {
		t.Fatalf("secret leaked: %s", out)
	}
}

func TestRoles(t *testing.T) {
	for _, r := range []Role{RoleHelpdesk, RoleOfficer, RoleAdmin} {
		got, err := ParseRole(r.String())
		if err != nil || got != r {
			t.Fatalf("%v round trip: %v %v", r, got, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Fatal("unknown role accepted")
	}
	if RoleHelpdesk.Allows(RoleOfficer) || !RoleOfficer.Allows(RoleHelpdesk) || !RoleAdmin.Allows(RoleOfficer) || RoleAdmin.Allows(RoleNone) {
		t.Fatal("role order wrong")
	}
}

func TestHashTokenIgnoresSurroundingSpace(t *testing.T) {
	if !bytes.Equal(HashToken("abc\n"), HashToken("abc")) {
		t.Fatal("a token pasted with a newline must still match")
	}
}
