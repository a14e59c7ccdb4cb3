package config

import (
	"testing"

	"github.com/mamori-dev/mamori/internal/winetest"
)

// TestUnderWine runs the registry layer's Windows test against wine's
// registry.
func TestUnderWine(t *testing.T) {
	env := winetest.New(t)
	exe := winetest.BuildTest(t, ".")
	t.Logf("under wine:\n%s", env.RunGoTest(t, exe, "^TestRegistryLayer$", "MAMORI_CONFIG_REGISTRY_LIVE=1"))
}
