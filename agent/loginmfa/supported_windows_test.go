package loginmfa_test

import (
	"context"
	"testing"

	"github.com/mamori-dev/mamori/agent/control/controltest"
	"github.com/mamori-dev/mamori/agent/loginmfa"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// TestWindowsNotApplicable runs the Windows build itself (under wine in
// CI: GOOS=windows go test -exec wine64): no PAM, and without a credential
// provider wired in (Options.CredProv) nothing to check.
func TestWindowsNotApplicable(t *testing.T) {
	c := loginmfa.New(loginmfa.Options{Emitter: &controltest.Emitter{}})
	if err := c.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil || st.State != mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE || st.Evidence["platform"] != "windows" {
		t.Fatalf("%v %v", st, err)
	}
}
