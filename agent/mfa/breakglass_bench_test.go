package mfa_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/agent/mfa/mfatest"
	"github.com/mamori-dev/mamori/internal/mfabundle"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// BenchmarkBreakGlassConsume: one recovery login's work on the agent's
// break-glass file (the verifier's recovery path without PAM), a user's
// ten codes with the one typed last in the file (ten comparisons), SHA-256
// as issued before issue 14 item 8 against argon2id as issued now.
//
//	go test ./agent/mfa -run '^$' -bench BreakGlassConsume -benchtime 200x
func BenchmarkBreakGlassConsume(b *testing.B) {
	for _, kdf := range []bool{false, true} {
		name := map[bool]string{false: "sha256", true: "argon2id"}[kdf]
		b.Run(name, func(b *testing.B) {
			n := (b.N + 9) / 10 * 10
			u := mfatest.NewUserN(b, "tanaka", n, kdf)
			hs := u.Record.RecoveryCodeHashes
			for i := 0; i < n; i += 10 {
				slices.Reverse(hs[i : i+10])
			}
			g := &mfa.BreakGlass{Path: filepath.Join(b.TempDir(), "breakglass")}
			if err := g.Replace([]*mamoriv1.MFAUserSecret{u.Record}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				ok, err := g.Consume("tanaka", mfabundle.NormalizeCode(u.RecoveryCodes[i]))
				if err != nil || !ok {
					b.Fatalf("code %d: %v %v", i, ok, err)
				}
			}
		})
	}
}
