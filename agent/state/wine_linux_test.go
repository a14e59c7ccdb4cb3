package state

import (
	"syscall"
	"testing"

	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs TestProtectStateDir against wine's file security:
// Protect narrows a state directory left with ProgramData's ACL.
func TestUnderWine(t *testing.T) {
	// Wine maps a file's DACL onto unix mode bits and back; with umask 077
	// the bits wine adds on its own for "other" stay off (as in
	// agent/loginmfa's wine test), so what is left is what Protect set.
	defer syscall.Umask(syscall.Umask(0o077))
	env := winetest.New(t)
	exe := winetest.BuildTest(t, ".")
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe, "^TestProtectStateDir$", "MAMORI_STATE_PROTECT_LIVE=wine"))
}
