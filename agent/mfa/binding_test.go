package mfa_test

import (
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestTempCodeBoundToAnotherDevice (issue 21): a privileged user's
// temporary code is bound to one terminal. The server sends it to that
// terminal only; should a bundle for this terminal hold a code bound to
// another one anyway, the terminal refuses it (reason code_other_device)
// and still accepts a code bound to itself or to none.
func TestTempCodeBoundToAnotherDevice(t *testing.T) {
	c := &clock{time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)}
	ev := &controltest.Emitter{}
	v := open(t, t.TempDir(), c, ev)
	other, tcOther := mfatest.TempCode(t, "root", c.t.Add(time.Hour))
	tcOther.DeviceId = "dev-2"
	own, tcOwn := mfatest.TempCode(t, "root", c.t.Add(time.Hour))
	tcOwn.DeviceId = "dev-1"
	any, tcAny := mfatest.TempCode(t, "root", c.t.Add(time.Hour))
	must(t, v.TakeBundle(t.Context(), "dev-1", mfatest.SealBundle(t, v.PublicKey(), "dev-1", &mamoriv1.MFABundle{Version: "g1",
		TempCodes: []*mamoriv1.MFATempCode{tcOther, tcOwn, tcAny}})))
	if got := v.Verify(t.Context(), mfa.Attempt{User: "root", Code: other}); got != mfa.Deny {
		t.Fatalf("code bound to dev-2 on dev-1: %v", got)
	}
	if f := eventsOf(ev.Events(), mfa.KindFailure); len(f) != 1 || f[0].Attrs["reason"] != "code_other_device" {
		t.Fatalf("failure events: %+v", f)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "root", Code: own}); got != mfa.Allow {
		t.Fatalf("code bound to dev-1 on dev-1: %v", got)
	}
	if got := v.Verify(t.Context(), mfa.Attempt{User: "root", Code: any}); got != mfa.Allow {
		t.Fatalf("unbound code: %v", got)
	}
}
