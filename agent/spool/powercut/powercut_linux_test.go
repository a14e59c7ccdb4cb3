// Package powercut cuts the power under the agent's spool: the real spool
// runs inside a real Debian kernel under qemu, qemu is killed at random 20
// times (internal/vmtest.PowerCuts says how), and after each reboot every
// event whose Append had returned is there, unless an Ack of it was in
// flight; no event whose Ack had returned is; none twice.
//
// What it does not show: a disk whose own volatile write cache loses
// flushed writes (dm-log-writes could replay those).
package powercut

import (
	"regexp"
	"testing"

	"github.com/mamori-dev/mamori/internal/vmtest"
)

func TestPowerCutSpool(t *testing.T) {
	vmtest.Require(t)
	// b<boot>-<round>-<0..3>: the last part is one digit, so a line cut
	// short by the kill never matches.
	vmtest.PowerCuts(t, "github.com/mamori-dev/mamori/agent/spool/powercut/guest", regexp.MustCompile(`^b[0-9]+-[0-9]+-[0-3]$`), 20)
}
