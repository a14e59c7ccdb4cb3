package pamtest

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestPAMStackTempCodeAndUnlock: through the real module and pamtester —
// a helpdesk temporary code logs in once and is refused after its expiry;
// a locked-out user gets in again after the helpdesk's unlock reaches the
// terminal in a new bundle.
func TestPAMStackTempCodeAndUnlock(t *testing.T) {
	var offset atomic.Int64 // the verifier's clock runs ahead by this much
	s := newStackWith(t, func(c *mfa.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	tanaka, suzuki := mfatest.NewUser(t, "tanaka"), mfatest.NewUser(t, "suzuki")
	now := time.Now()
	once, tcOnce := mfatest.TempCode(t, "tanaka", now.Add(time.Hour))
	expiring, tcExpiring := mfatest.TempCode(t, "tanaka", now.Add(10*time.Minute))
	bundle := func(version string, unlocks ...*mamoriv1.MFAUnlock) *mamoriv1.SealedMFABundle {
		return mfatest.SealBundle(t, s.verifier.PublicKey(), "dev-1", &mamoriv1.MFABundle{Version: version,
			Users:     []*mamoriv1.MFAUserSecret{tanaka.Record, suzuki.Record},
			TempCodes: []*mamoriv1.MFATempCode{tcOnce, tcExpiring}, Unlocks: unlocks})
	}
	if err := s.verifier.TakeBundle(t.Context(), "dev-1", bundle("g1")); err != nil {
		t.Fatal(err)
	}

	s.want("temporary code", "tanaka", once, true)
	s.want("the same temporary code again", "tanaka", once, false)
	s.want("temporary code of another user", "suzuki", expiring, false)
	offset.Store(int64(11 * time.Minute))
	s.want("temporary code after its expiry", "tanaka", expiring, false)
	offset.Store(0)

	for range 5 {
		s.login("suzuki", "111111")
	}
	if ok, out := s.login("suzuki", suzuki.Code(time.Now())); ok || !strings.Contains(out, "Locked") {
		t.Fatalf("right code while locked out: success=%v\n%s", ok, out)
	}
	// The helpdesk's unlock arrives with the next bundle.
	if err := s.verifier.TakeBundle(t.Context(), "dev-1", bundle("g2", &mamoriv1.MFAUnlock{User: "suzuki", Generation: 1})); err != nil {
		t.Fatal(err)
	}
	s.want("right code after the unlock", "suzuki", suzuki.Code(time.Now().Add(30*time.Second)), true)

	var used, expired int
	for _, e := range s.events.Events() {
		if e.Kind == mfa.KindTempCodeUsed && e.Attrs["code_id"] == tcOnce.Id && e.Attrs["service"] == s.service {
			used++
		}
		if e.Kind == mfa.KindFailure && e.Attrs["user"] == "tanaka" && e.Attrs["method"] == "temp_code" {
			expired++
		}
	}
	if used != 1 || expired < 2 {
		t.Fatalf("events: %d temp_code_used (want 1), %d temp-code failures for tanaka (want ≥ 2: replay, expiry)", used, expired)
	}
}
