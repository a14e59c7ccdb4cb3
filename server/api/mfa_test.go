package api_test

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

func TestMFAEnrolAndBundle(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testMFAEnrolAndBundle(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testMFAEnrolAndBundle(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

// testMFAEnrolAndBundle: an officer enrols users over real mTLS gRPC; a
// device that reports its HPKE key receives a bundle only it can open,
// holding the secret of the otpauth URI, and a new one only when users or
// the policy change; the policy's users setting filters the bundle.
func testMFAEnrolAndBundle(t *testing.T, o servertest.Options) {
	h := servertest.Start(t, o)
	ctx := context.Background()
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	helpdesk := h.Admin(t, h.Operator(t, "helpdesk", auth.RoleHelpdesk))

	_, err := helpdesk.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "Tanaka Taro"})
	wantCode(t, err, codes.InvalidArgument)
	en, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(en.OtpauthUri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || len(en.RecoveryCodes) != 10 {
		t.Fatalf("enrolment answer: %v %v", en, err)
	}
	secret, err := totp.ParseBase32(u.Query().Get("secret"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	wantCode(t, err, codes.AlreadyExists)

	d := enroll(t, h, "pc-01")
	key, err := mfabundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	report := func(version string) *mamoriv1.SealedMFABundle {
		t.Helper()
		resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")},
			HpkePublicKey: mfabundle.PublicKeyBytes(key), MfaBundleVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		return resp.MfaBundle
	}
	users := func(sb *mamoriv1.SealedMFABundle) (*mamoriv1.MFABundle, []string) {
		t.Helper()
		b, err := mfabundle.Open(key, d.ID, sb.GetSealed())
		if err != nil {
			t.Fatalf("open bundle: %v", err)
		}
		var names []string
		for _, u := range b.Users {
			names = append(names, u.User)
		}
		return b, names
	}

	// Nobody is allowed until an officer says so (issue #14): the
	// default policy's login-mfa control names no users.
	if sb := report(""); sb != nil {
		t.Fatalf("bundle before any users were allowed: %v", sb.Version)
	}
	setLoginMFA(t, officer, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "*"}})
	sb := report("")
	b, names := users(sb)
	if !slices.Equal(names, []string{"tanaka"}) || b.Version != sb.Version {
		t.Fatalf("bundle users %v, version %q/%q", names, b.Version, sb.Version)
	}
	tu := b.Users[0]
	if string(tu.TotpSecret) != string(secret) || tu.Digits != 6 || tu.PeriodSeconds != 30 || len(tu.RecoveryCodeHashes) != 10 {
		t.Fatalf("bundle entry does not match the enrolment: %+v", tu)
	}
	// argon2id with a salt per code (issue 14 item 8): every hash is
	// argon2id, and the code verifies against exactly one of them.
	if n := len(slices.DeleteFunc(slices.Clone(tu.RecoveryCodeHashes), func(h string) bool { return mfabundle.IsCodeKDF(h) })); n != 0 {
		t.Fatalf("%d recovery-code hashes in the bundle are not argon2id", n)
	}
	if n := len(slices.DeleteFunc(slices.Clone(tu.RecoveryCodeHashes), func(h string) bool {
		return !mfabundle.IsCodeKDF(h) || !mfabundle.VerifyCode(h, tu.RecoverySalt, en.RecoveryCodes[3])
	})); n != 1 {
		t.Fatalf("recovery code verifies against %d argon2id hashes in the bundle, want 1", n)
	}
	if _, err := mfabundle.Open(key, "another-device", sb.Sealed); err == nil {
		t.Fatal("bundle opens under another device ID")
	}
	if again := report(sb.Version); again != nil {
		t.Fatalf("bundle sent again to a device that holds it: %v", again.Version)
	}
	if none, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}}); err != nil || none.MfaBundle != nil {
		t.Fatalf("bundle without a device key: %v %v", none, err)
	}
	_, err = d.Client.Report(ctx, &mamoriv1.ReportRequest{HpkePublicKey: []byte("short")})
	wantCode(t, err, codes.InvalidArgument)

	// A new user: a new bundle at the next report.
	if _, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "suzuki"}); err != nil {
		t.Fatal(err)
	}
	sb2 := report(sb.Version)
	if _, names := users(sb2); !slices.Equal(names, []string{"suzuki", "tanaka"}) {
		t.Fatalf("after a second enrolment: %v", names)
	}

	// Replace gives tanaka a new secret.
	en2, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka", Replace: true})
	if err != nil || en2.OtpauthUri == en.OtpauthUri {
		t.Fatalf("replace: %v", err)
	}

	// The policy names the users a terminal gets.
	pol, err := officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := pol.Policy
	p.Controls[policy.ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "suzuki"}}
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "MFA for suzuki"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the server's policy cache
	if _, names := users(report(sb2.Version)); !slices.Equal(names, []string{"suzuki"}) {
		t.Fatalf("policy users=suzuki: bundle has %v", names)
	}
}

// setLoginMFA replaces the base policy's login-mfa control (nil removes
// it) and waits out the server's policy cache.
func setLoginMFA(t *testing.T, officer mamoriv1.AdminServiceClient, c *mamoriv1.ControlPolicy) {
	t.Helper()
	pol, err := officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := pol.Policy
	if c == nil {
		delete(p.Controls, policy.ControlLoginMFA)
	} else {
		p.Controls[policy.ControlLoginMFA] = c
	}
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "who may log in where"}); err != nil {
		t.Fatal(err)
	}
	waitPolicyCache()
}

// waitPolicyCache waits out the server's policy cache (PolicyTTL 1 s).
func waitPolicyCache() { time.Sleep(1100 * time.Millisecond) }
