// Package tpmtest gives tests a TPM: the go-tpm-tools simulator (cgo), one
// "machine" per seed. It is imported only by _test.go files, so the
// simulator never reaches a shipped binary (internal/tpm's deps test checks
// the agent).
//
// The simulator is one global object in C: Open blocks until the previous
// one is closed, so a test that needs two machines opens them one after
// the other, and packages using it must not run such tests in parallel.
package tpmtest

import (
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// Open starts a simulated TPM whose hierarchy seeds derive from seed: the
// same seed is the same TPM (same EK, same SRK), another seed another one.
// It is closed when the test ends, or earlier by calling Close.
func Open(t testing.TB, seed int64) transport.TPMCloser {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatalf("start TPM simulator: %v", err)
	}
	tp := transport.FromReadWriteCloser(sim)
	t.Cleanup(func() {
		if !sim.IsClosed() {
			sim.Close()
		}
	})
	return tp
}
