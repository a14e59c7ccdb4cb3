package loginmfa_test

import (
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs the Windows build of the control under wine: it must
// say NOT_APPLICABLE (no credential provider yet), not pretend.
func TestUnderWine(t *testing.T) {
	testenv.Short(t)
	env := winetest.New(t)
	exe := winetest.BuildTest(t, ".")
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe, "^TestWindowsNotApplicable$"))
}
