package mfa_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestCodesKDFAndLegacy (issue 14 item 8): recovery and temporary codes
// hashed with argon2id and a salt per code (what the server issues now)
// and codes hashed the old way (SHA-256, one salt per user: issued before)
// both verify offline from the bundle, once; wrong codes do not; the
// break-glass file carries both forms, so pam_mamori.so reads them too.
func TestCodesKDFAndLegacy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfa")
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, dir, c, ev)
	kdf, legacy := mfatest.NewUser(t, "tanaka"), mfatest.NewLegacyUser(t, "suzuki")
	if h := kdf.Record.RecoveryCodeHashes[0]; !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("mfatest's KDF hash %q", h)
	}
	tcNew, tcNewEntry := mfatest.TempCode(t, "tanaka", c.t.Add(time.Hour))
	tcOld, tcOldEntry := mfatest.LegacyTempCode(t, "suzuki", c.t.Add(time.Hour))
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{Version: "g1",
		Users: []*mamoriv1.MFAUserSecret{kdf.Record, legacy.Record}, TempCodes: []*mamoriv1.MFATempCode{tcNewEntry, tcOldEntry}})))
	bg, err := os.ReadFile(filepath.Join(dir, "breakglass"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(bg), "$argon2id$"); n != 3 || strings.Count(string(bg), "\nsuzuki ") != 3 {
		t.Fatalf("break-glass file:\n%s", bg)
	}
	try := func(user, code string, want mfa.Verdict) {
		t.Helper()
		if got := v.Verify(t.Context(), mfa.Attempt{User: user, Code: code}); got != want {
			t.Fatalf("%s %s: %v, want %v", user, code, got, want)
		}
	}
	try("tanaka", "AAAA-AAAA-AA", mfa.Deny)          // recovery-shaped, no such code
	try("tanaka", legacy.RecoveryCodes[0], mfa.Deny) // another user's code
	try("tanaka", strings.ToLower(kdf.RecoveryCodes[1]), mfa.Allow)
	try("tanaka", kdf.RecoveryCodes[1], mfa.Deny) // once
	try("suzuki", legacy.RecoveryCodes[2], mfa.Allow)
	try("suzuki", legacy.RecoveryCodes[2], mfa.Deny)
	try("tanaka", tcNew, mfa.Allow)
	try("tanaka", tcNew, mfa.Deny)
	try("suzuki", tcOld, mfa.Allow)
	try("suzuki", tcOld, mfa.Deny)
	if n := len(eventsOf(ev.Events(), mfa.KindRecoveryUsed)); n != 2 {
		t.Errorf("%d recovery events, want 2", n)
	}
	// A new bundle (the server does not know of the uses yet) does not
	// bring the used argon2id code back.
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.Seal(t, v.PublicKey(), "dev-1", "g2", kdf, legacy)))
	try("tanaka", kdf.RecoveryCodes[1], mfa.Deny)
	try("tanaka", kdf.RecoveryCodes[0], mfa.Allow)
}
