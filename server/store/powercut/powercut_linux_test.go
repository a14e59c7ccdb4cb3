// Package powercut cuts the power under mamori-server's SQLite store: the
// real store (WAL, synchronous=FULL) commits reports inside a real Debian
// kernel under qemu, qemu is killed at random 20 times
// (internal/vmtest.PowerCuts says how), and after each reboot every event
// of a report whose commit had returned — what the server acknowledged to
// the agent — is stored, none twice. (With synchronous=OFF the first cut
// loses acknowledged events: checked.)
package powercut

import (
	"regexp"
	"testing"

	"github.com/mamori-dev/mamori/internal/vmtest"
)

func TestPowerCutSQLiteStore(t *testing.T) {
	vmtest.Require(t)
	// The guest's ids end in "<index><0>": a line cut short by the kill
	// loses the final digits and no longer has the UUID's 36 characters.
	vmtest.PowerCuts(t, "github.com/mamori-dev/mamori/server/store/powercut/guest",
		regexp.MustCompile(`^00000000-[0-9]{4}-4000-8000-[0-9]{12}$`), 20)
}
