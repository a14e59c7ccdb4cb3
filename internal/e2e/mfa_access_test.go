package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/mfa"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// setLoginMFA sets the base policy's login-mfa control (nil removes it)
// and the groups' overrides of it (nil leaves the groups alone).
func setLoginMFA(t *testing.T, h *servertest.Harness, base *mamoriv1.ControlPolicy, groups map[string]*mamoriv1.ControlPolicy) {
	t.Helper()
	admin := h.Admin(t, h.AdminToken)
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.Policy
	if base == nil {
		delete(p.Controls, policy.ControlLoginMFA)
	} else {
		p.Controls[policy.ControlLoginMFA] = base
	}
	if groups != nil {
		p.Groups = map[string]*mamoriv1.GroupPolicy{}
		for g, c := range groups {
			p.Groups[g] = &mamoriv1.GroupPolicy{Controls: map[string]*mamoriv1.ControlPolicy{policy.ControlLoginMFA: c}}
		}
	}
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "e2e: who may log in where"}); err != nil {
		t.Fatal(err)
	}
}

// allowAllMFAUsers names every enrolled user in the base policy: since
// issue #14 a terminal receives nobody's factors until an officer says so.
func allowAllMFAUsers(t *testing.T, h *servertest.Harness) {
	t.Helper()
	setLoginMFA(t, h, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "*"}}, nil)
}

// TestMFABundleAccessEndToEnd (issue #14 item 1): a real server and three
// real agent cores over mTLS. The terminal in group A holds only A's user
// (its break-glass file too; B's code is refused there), the one in B only
// B's, the one in no group nothing; with the login-mfa control removed
// the terminals drop what they held and refuse the codes they accepted.
func TestMFABundleAccessEndToEnd(t *testing.T) {
	testenv.Short(t)
	h := servertest.Start(t, servertest.Options{})
	secrets := map[string]totp.Secret{}
	for _, u := range []string{"tanaka", "suzuki"} {
		var en struct {
			URI string `json:"otpauth_uri"`
		}
		if err := json.Unmarshal([]byte(mamorictl(t, h, "C", "mfa", "enroll", u, "-o", "json")), &en); err != nil {
			t.Fatal(err)
		}
		uri, _ := url.Parse(en.URI)
		s, err := totp.ParseBase32(uri.Query().Get("secret"))
		if err != nil {
			t.Fatal(err)
		}
		secrets[u] = s
	}
	ctl := func(users string) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": users}}
	}
	setLoginMFA(t, h, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR},
		map[string]*mamoriv1.ControlPolicy{"市民課": ctl("tanaka"), "税務課": ctl("suzuki")})
	a, b, n := startMFATerminal(t, h, "pc-acc-a"), startMFATerminal(t, h, "pc-acc-b"), startMFATerminal(t, h, "pc-acc-n")
	mamorictl(t, h, "C", "device", "set-group", a.id, "市民課", "--reason", "e2e")
	mamorictl(t, h, "C", "device", "set-group", b.id, "税務課", "--reason", "e2e")
	a.waitRound(t, "A's bundle", func(daemon.RoundResult) bool { return slices.Equal(a.ver.Users(), []string{"tanaka"}) })
	b.waitRound(t, "B's bundle", func(daemon.RoundResult) bool { return slices.Equal(b.ver.Users(), []string{"suzuki"}) })
	for range 3 {
		n.waitRound(t, "a round of the terminal in no group", func(r daemon.RoundResult) bool { return r.Err == nil })
	}
	if v := n.ver.BundleVersion(); v != "" || len(n.ver.Users()) != 0 {
		t.Fatalf("terminal in no group holds bundle %q with %v", v, n.ver.Users())
	}
	code := func(u string) string {
		c, _ := totp.Default().Code(secrets[u], h.Clock.Now())
		return c
	}
	if v := a.login(t, "suzuki", code("suzuki")); v != mfa.Deny {
		t.Fatalf("B's user on A: %v", v)
	}
	if v := a.login(t, "tanaka", code("tanaka")); v != mfa.Allow {
		t.Fatalf("A's user on A: %v", v)
	}
	if v := n.login(t, "tanaka", code("tanaka")); v != mfa.Deny {
		t.Fatalf("a user on the terminal in no group: %v", v)
	}
	// What A keeps on disk names no other user: its break-glass file
	// holds tanaka's recovery hashes only, and no file holds B's seed.
	bg, err := os.ReadFile(filepath.Join(a.dir.Path(), "mfa", mfa.BreakGlassFile))
	if err != nil || !bytes.Contains(bg, []byte("tanaka ")) || bytes.Contains(bg, []byte("suzuki")) {
		t.Fatalf("A's break-glass file: %v\n%s", err, bg)
	}
	noSeedOnDisk(t, a.dir.Path(), secrets["suzuki"])

	// No login-mfa control: A and B are sent the empty bundle and drop
	// their users and recovery codes.
	setLoginMFA(t, h, nil, map[string]*mamoriv1.ControlPolicy{})
	for _, m := range []*mfaTerminal{a, b} {
		m.waitRound(t, "the bundle withdrawn", func(daemon.RoundResult) bool { return m.ver.BundleVersion() == "none" })
		if us := m.ver.Users(); len(us) != 0 {
			t.Fatalf("users after the withdrawal: %v", us)
		}
	}
	if v := b.login(t, "suzuki", code("suzuki")); v != mfa.Deny {
		t.Fatalf("B's user after the withdrawal: %v", v)
	}
	if bg, err := os.ReadFile(filepath.Join(a.dir.Path(), "mfa", mfa.BreakGlassFile)); err != nil || bytes.Contains(bg, []byte("tanaka")) {
		t.Fatalf("A's break-glass file after the withdrawal: %v %q", err, bg)
	}
}

// noSeedOnDisk fails if any file under dir holds seed in the clear.
func noSeedOnDisk(t *testing.T, dir string, seed []byte) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, seed) {
			t.Errorf("%s holds another user's seed", p)
		}
		return nil
	})
}
