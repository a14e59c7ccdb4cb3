package loginmfa_test

import (
	"context"
	"os"
	"testing"

	"github.com/mamori-dev/mamori/agent/loginmfa"
)

// TestWindowsSecurityLog runs the Security log query (wevtapi.dll:
// EvtQuery, EvtNext, EvtRender) for real. Under wine (wine_linux_test.go)
// there is no Security log with logon events: the query must fail or
// come back empty, never crash; on a Windows machine, as an administrator,
// every event it returns must parse as a 4624 and be newer than asked.
func TestWindowsSecurityLog(t *testing.T) {
	if os.Getenv("MAMORI_LOGINMFA_HKLM") != "1" {
		t.Skip("reads the Security log: runs under wine (wine_linux_test.go)")
	}
	ctx := context.Background()
	var lg loginmfa.SecurityLog
	latest, err := lg.Latest(ctx)
	t.Logf("Latest: %d, %v", latest, err)
	after := uint64(0)
	if latest > 5 {
		after = latest - 5
	}
	xs, err := lg.After(ctx, after, 10)
	t.Logf("After(%d): %d events, %v", after, len(xs), err)
	for _, x := range xs {
		l, err := loginmfa.ParseLogonEvent(x)
		if err != nil {
			t.Errorf("an event from the log does not parse: %v\n%s", err, x)
			continue
		}
		if l.RecordID <= after {
			t.Errorf("record %d, asked for those after %d", l.RecordID, after)
		}
	}
}
