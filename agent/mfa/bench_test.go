package mfa_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/agent/spool"
)

// BenchmarkVerify: the verifier's own share of a code check, in process
// (no socket, no pipe), per attempt, as p50-µs and p99-µs:
//
//	wrong       a wrong code for an enrolled user (the pipe bench's
//	            request): a failure recorded, events in memory
//	wrong-spool the same with the events in the agent's real spool on
//	            disk (daemon.NewReservedEmitter, as mamori-agent wires it)
//	right       a right code with a fresh step each time: the step
//	            durable before the answer
//	unknown     a wrong code for a name the terminal does not know
//
//	go test -run '^$' -bench Verify -benchtime 2000x ./agent/mfa
func BenchmarkVerify(b *testing.B) {
	for _, tc := range []struct {
		name    string
		spooled bool
		right   bool
		user    string
	}{
		{name: "wrong", user: "tanaka"},
		{name: "wrong-spool", spooled: true, user: "tanaka"},
		{name: "right", right: true, user: "tanaka"},
		{name: "unknown", user: "nobody-here"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			u := mfatest.NewUser(b, "tanaka")
			t0 := time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)
			step := 0
			cfg := mfa.DefaultConfig()
			cfg.MaxFailures = 1 << 30 // a run of failures that never locks
			cfg.Dir, cfg.Events = filepath.Join(dir, "mfa"), &countingEmitter{}
			cfg.Now = func() time.Time { return t0.Add(time.Duration(step) * 30 * time.Second) }
			if tc.spooled {
				sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{MaxRecords: 1 << 20, MaxBytes: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				defer sp.Close()
				cfg.Events = daemon.NewReservedEmitter(sp, nil)
			}
			var _ control.Emitter = cfg.Events
			v, err := mfa.Open(cfg, "dev-1")
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			if err := v.TakeBundle(b.Context(), "dev-1", mfatest.Seal(b, v.PublicKey(), "dev-1", "g1", u)); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				code := "000000"
				if tc.right {
					step++
					code = u.Code(cfg.Now())
				}
				start := time.Now()
				got := v.Verify(b.Context(), mfa.Attempt{User: tc.user, Code: code})
				lat[i] = time.Since(start)
				if (got == mfa.Allow) != tc.right {
					b.Fatalf("attempt %d: %v", i, got)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
