package regpolicy

import (
	"testing"

	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs this package's Windows tests (registry_windows_test.go:
// apply, read back, drift re-applied) for real against wine's registry.
func TestUnderWine(t *testing.T) {
	env := winetest.New(t)
	exe := winetest.BuildTest(t, ".")
	out := env.RunGoTest(t, exe, "^TestRegistryLive$", liveEnv+"=1")
	t.Logf("under wine:\n%s", out)
}
