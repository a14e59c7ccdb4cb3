package api_test

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/internal/mfabundle"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/totp"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// seed makes a 20-byte hardware-token seed from a label.
func seed(label string) (raw []byte, text string) {
	raw = []byte(fmt.Sprintf("%-20s", label))[:20]
	return raw, b32.EncodeToString(raw)
}

// mfaDevice is an enrolled device with a bundle key.
type mfaDevice struct {
	*servertest.Device
	key interface{ Bytes() ([]byte, error) }
	pub []byte
	ver string
	t   *testing.T
}

func newMFADevice(t *testing.T, h *servertest.Harness, host string) *mfaDevice {
	t.Helper()
	k, err := mfabundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &mfaDevice{Device: enroll(t, h, host), key: k, pub: mfabundle.PublicKeyBytes(k), t: t}
}

// report sends events and returns the new bundle, or nil when the one
// held is current.
func (d *mfaDevice) report(evs ...*mamoriv1.Event) *mamoriv1.MFABundle {
	d.t.Helper()
	resp, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")},
		Events: evs, HpkePublicKey: d.pub, MfaBundleVersion: d.ver})
	if err != nil {
		d.t.Fatal(err)
	}
	if resp.MfaBundle == nil {
		return nil
	}
	kb, _ := d.key.Bytes()
	k, _ := mfabundle.PrivateKey(kb)
	b, err := mfabundle.Open(k, d.ID, resp.MfaBundle.Sealed)
	if err != nil {
		d.t.Fatal(err)
	}
	d.ver = b.Version
	return b
}

func usedEvent(kind, user, id string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: uuid.NewString(), Time: timestamppb.Now(), Control: policy.ControlLoginMFA, Kind: kind,
		Attributes: map[string]string{"user": user, "code_id": id, "service": "login"}}
}

func TestMFALifecycle(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testMFALifecycle(t, servertest.Options{}) })
	t.Run("postgres", func(t *testing.T) { testMFALifecycle(t, servertest.Options{DB: pgtest.DSN(t)}) })
}

// testMFALifecycle drives every lifecycle RPC over real mTLS gRPC and
// checks what reaches a device's bundle: imported tokens, temporary codes,
// unlock counters (fleet-wide and per device), codes consumed fleet-wide
// from one device's events, a reset; and that audit records and the
// server log never hold a code or a seed.
func testMFALifecycle(t *testing.T, o servertest.Options) {
	logs := &syncBuffer{}
	o.Log = logs
	h := servertest.Start(t, o)
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	helpdesk := h.Admin(t, h.Operator(t, "helpdesk", auth.RoleHelpdesk))
	a, b := newMFADevice(t, h, "pc-a"), newMFADevice(t, h, "pc-b")
	a.report()
	b.report()

	en, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	if err != nil {
		t.Fatal(err)
	}
	sRaw, sText := seed("token-seed-sato")
	_, kText := seed("token-seed-kato")
	csv := "serial,user,seed\nSN-0001, sato ," + strings.ToLower(sText) + "\nSN-0002,kato," + kText + "\n"
	imp, err := officer.ImportMFASeeds(ctx, &mamoriv1.ImportMFASeedsRequest{Csv: []byte(csv)})
	if err != nil || imp.Imported != 2 {
		t.Fatalf("import: %v %v", imp, err)
	}
	tc, err := helpdesk.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "tanaka", ExpiresIn: durationpb.New(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !mfabundle.LooksLikeTempCode(mfabundle.NormalizeCode(tc.Code)) || !tc.ExpiresAt.AsTime().Equal(h.Clock.Now().Add(2*time.Hour)) {
		t.Fatalf("temp code answer %v", tc.ExpiresAt)
	}
	tcDefault, err := helpdesk.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "nakamura"}) // not enrolled
	if err != nil || !tcDefault.ExpiresAt.AsTime().Equal(h.Clock.Now().Add(time.Hour)) {
		t.Fatalf("default expiry: %v %v", tcDefault, err)
	}
	if _, err := helpdesk.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka"}); err != nil {
		t.Fatal(err)
	}
	un, err := helpdesk.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka", DeviceId: a.ID})
	if err != nil || un.Generation != 1 {
		t.Fatalf("unlock on device a: %v %v", un, err)
	}

	setLoginMFA(t, officer, &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR, Settings: map[string]string{"users": "*"}})
	ba := a.report()
	if ba == nil {
		t.Fatal("no new bundle after the lifecycle changes")
	}
	users := map[string]*mamoriv1.MFAUserSecret{}
	for _, u := range ba.Users {
		users[u.User] = u
	}
	if s := users["sato"]; s == nil || string(s.TotpSecret) != string(sRaw) || s.TokenSerial != "SN-0001" || s.Digits != 6 {
		t.Fatalf("imported sato in the bundle: %+v", s)
	}
	if len(ba.TempCodes) != 2 || ba.TempCodes[0].User != "nakamura" || ba.TempCodes[1].User != "tanaka" ||
		!mfabundle.VerifyCode(ba.TempCodes[1].Hash, ba.TempCodes[1].Salt, tc.Code) || !mfabundle.IsCodeKDF(ba.TempCodes[1].Hash) || ba.TempCodes[1].Id != tc.Id {
		t.Fatalf("temp codes in the bundle: %+v", ba.TempCodes)
	}
	if len(ba.Unlocks) != 1 || ba.Unlocks[0].User != "tanaka" || ba.Unlocks[0].Generation != 2 {
		t.Fatalf("unlocks for device a (fleet-wide 1 + own 1): %+v", ba.Unlocks)
	}
	if !slices.Equal(ba.Methods, []string{"totp", "tpm-pin"}) || ba.GraceUntil != nil {
		t.Fatalf("default methods and grace: %v %v", ba.Methods, ba.GraceUntil)
	}
	bb := b.report()
	if len(bb.Unlocks) != 1 || bb.Unlocks[0].Generation != 1 {
		t.Fatalf("unlocks for device b (fleet-wide only): %+v", bb.Unlocks)
	}

	list, err := helpdesk.ListMFAUsers(ctx, &mamoriv1.ListMFAUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, u := range list.Users {
		rows = append(rows, fmt.Sprintf("%s/%s/%s/%d/%d", u.User, u.Method, u.TokenSerial, u.RecoveryCodesLeft, u.TempCodesActive))
	}
	if want := []string{"kato/totp-hardware/SN-0002/0/0", "nakamura/none//0/1", "sato/totp-hardware/SN-0001/0/0", "tanaka/totp//10/1"}; !slices.Equal(rows, want) {
		t.Fatalf("ListMFAUsers %v; want %v", rows, want)
	}

	// Device a used tanaka's temp code and a recovery code: after b's next
	// report, b no longer holds them. A re-sent event changes nothing.
	// The stored hash of recovery code 4 (argon2id, a salt per code): the
	// one it verifies against.
	var recHash string
	for _, h := range users["tanaka"].RecoveryCodeHashes {
		if mfabundle.VerifyCode(h, users["tanaka"].RecoverySalt, en.RecoveryCodes[4]) {
			recHash = h
		}
	}
	evs := []*mamoriv1.Event{usedEvent("mfa_temp_code_used", "tanaka", tc.Id), usedEvent("mfa_recovery_used", "tanaka", mfabundle.CodeID(recHash)),
		usedEvent("mfa_recovery_used", "tanaka", "not-an-id"), usedEvent("mfa_recovery_used", "Bad User", "0123456789abcdef")}
	a.report(evs...)
	bb = b.report()
	if bb == nil {
		t.Fatal("device b got no new bundle after the codes were used on a")
	}
	for _, c := range bb.TempCodes {
		if c.Id == tc.Id {
			t.Fatal("a temp code used on device a is still in device b's bundle")
		}
	}
	for _, u := range bb.Users {
		if u.User == "tanaka" && (slices.Contains(u.RecoveryCodeHashes, recHash) || len(u.RecoveryCodeHashes) != 9) {
			t.Fatalf("recovery codes of tanaka on b: %d, used one present %v", len(u.RecoveryCodeHashes), slices.Contains(u.RecoveryCodeHashes, recHash))
		}
	}
	a.report()
	if again := a.report(evs[:2]...); again != nil {
		t.Fatalf("a re-sent use event made a new bundle %s", again.Version)
	}

	// Reset: tanaka's factors and temp codes go; a second reset finds nothing.
	if _, err := officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "tanaka", Reason: "lost phone"}); err != nil {
		t.Fatal(err)
	}
	_, err = officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "tanaka"})
	wantCode(t, err, codes.NotFound)
	bb = b.report()
	for _, u := range bb.Users {
		if u.User == "tanaka" {
			t.Fatal("reset user still in the bundle")
		}
	}
	for _, c := range bb.TempCodes {
		if c.User == "tanaka" {
			t.Fatal("reset user's temp code still in the bundle")
		}
	}

	// Grace and methods from the policy reach the bundle.
	pol, err := officer.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := pol.Policy
	p.Controls[policy.ControlLoginMFA] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{"users": "sato,ito", "grace_until": "2027-03-31", "methods": "totp,tpm-pin"}}
	if _, err := officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "grace for the rollout"}); err != nil {
		t.Fatal(err)
	}
	p.Controls[policy.ControlLoginMFA].Settings["grace_until"] = "someday"
	_, err = officer.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version + 1, Reason: "bad"})
	wantCode(t, err, codes.InvalidArgument)
	time.Sleep(1100 * time.Millisecond) // the server's policy cache
	bb = b.report()
	if bb == nil || !slices.Equal(bb.GraceUsers, []string{"ito"}) || !slices.Equal(bb.Methods, []string{"totp", "tpm-pin"}) ||
		!bb.GraceUntil.AsTime().Equal(time.Date(2027, 3, 31, 15, 0, 0, 0, time.UTC)) {
		t.Fatalf("grace in the bundle: %+v", bb)
	}

	// The audit trail has every action, and neither it nor the log holds
	// a code or a seed.
	aud, err := h.Admin(t, h.AdminToken).ListAudit(ctx, &mamoriv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	var all strings.Builder
	for _, r := range aud.Records {
		actions = append(actions, r.Action)
		fmt.Fprintln(&all, r.Actor, r.Action, r.Target, r.Detail)
	}
	for _, want := range []string{"mfa.import", "mfa.temp_code", "mfa.unlock", "mfa.code_used", "mfa.reset"} {
		if !slices.Contains(actions, want) {
			t.Errorf("no %s in the audit trail: %v", want, actions)
		}
	}
	secrets := []string{tc.Code, mfabundle.NormalizeCode(tc.Code), tcDefault.Code, sText, strings.ToLower(sText), kText, en.RecoveryCodes[4]}
	for where, text := range map[string]string{"audit trail": all.String(), "server log": logs.String()} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds a secret", where)
			}
		}
	}
	if !strings.Contains(all.String(), `reason="lost phone"`) || !strings.Contains(all.String(), "id="+tc.Id) {
		t.Errorf("audit details lack the reason or the code ID:\n%s", all.String())
	}
}

// TestMFALifecycleRoles: helpdesk may unlock, issue temporary codes and
// list; only an officer enrols, resets and imports; no token or a
// malformed one is refused before any handler runs.
func TestMFALifecycleRoles(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	helpdesk := h.Admin(t, h.Operator(t, "helpdesk", auth.RoleHelpdesk))
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	_, text := seed("roles-seed")
	csv := []byte("SN-9,sato," + text + "\n")
	if _, err := helpdesk.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka"}); err != nil {
		t.Errorf("helpdesk unlock: %v", err)
	}
	if _, err := helpdesk.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "tanaka"}); err != nil {
		t.Errorf("helpdesk temp code: %v", err)
	}
	if _, err := helpdesk.ListMFAUsers(ctx, &mamoriv1.ListMFAUsersRequest{}); err != nil {
		t.Errorf("helpdesk list: %v", err)
	}
	_, err := helpdesk.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = helpdesk.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "tanaka"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = helpdesk.ImportMFASeeds(ctx, &mamoriv1.ImportMFASeedsRequest{Csv: csv})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := officer.ImportMFASeeds(ctx, &mamoriv1.ImportMFASeedsRequest{Csv: csv}); err != nil {
		t.Errorf("officer import: %v", err)
	}
	if _, err := officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "sato"}); err != nil {
		t.Errorf("officer reset: %v", err)
	}

	noToken := mamoriv1.NewAdminServiceClient(h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost")))
	badToken := mamoriv1.NewAdminServiceClient(h.DialAdmin(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"),
		grpc.WithPerRPCCredentials(servertest.Bearer("mmo_not-a-real-token"))))
	// A disabled officer, and an operator whose stored role is none of
	// ours ("readonly"): refused like no token at all.
	stored := func(role string, disabled time.Time) mamoriv1.AdminServiceClient {
		tok := auth.NewToken(auth.OperatorTokenPrefix)
		if err := h.Srv.Store().CreateOperator(ctx, store.Operator{ID: uuid.NewString(), Name: role, Role: role,
			CreatedAt: h.Clock.Now(), DisabledAt: disabled, Token: &store.OperatorToken{ID: uuid.NewString(), Name: "t",
				Hash: auth.HashToken(tok.Reveal()), CreatedBy: "test", CreatedAt: h.Clock.Now(), ExpiresAt: h.Clock.Now().Add(24 * time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		return h.Admin(t, tok.Reveal())
	}
	disabled, readonly := stored("officer", h.Clock.Now()), stored("readonly", time.Time{})
	for name, c := range map[string]mamoriv1.AdminServiceClient{"no token": noToken, "malformed token": badToken,
		"disabled officer": disabled, "readonly role": readonly} {
		calls := map[string]func() error{
			"unlock": func() error {
				_, err := c.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka"})
				return err
			},
			"temp code": func() error {
				_, err := c.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "tanaka"})
				return err
			},
			"reset": func() error {
				_, err := c.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "tanaka"})
				return err
			},
			"import": func() error { _, err := c.ImportMFASeeds(ctx, &mamoriv1.ImportMFASeedsRequest{Csv: csv}); return err },
			"list":   func() error { _, err := c.ListMFAUsers(ctx, &mamoriv1.ListMFAUsersRequest{}); return err },
		}
		for call, fn := range calls {
			got := status.Code(fn())
			if got == codes.OK || (name != "readonly role" && got != codes.Unauthenticated) {
				t.Errorf("%s, %s: %v; want refused (Unauthenticated)", name, call, got)
			}
		}
	}
	list, _ := officer.ListMFAUsers(ctx, &mamoriv1.ListMFAUsersRequest{})
	if len(list.GetUsers()) != 1 || list.Users[0].User != "tanaka" || list.Users[0].Method != "none" {
		t.Fatalf("after the role checks: %v", list.GetUsers())
	}
}

// TestMFALifecycleHostileInput: every new RPC refuses malformed, oversized
// and hostile input with a clear error that never echoes a seed, and a
// refused import writes nothing.
func TestMFALifecycleHostileInput(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	officer := h.Admin(t, h.Operator(t, "officer", auth.RoleOfficer))
	if _, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"}); err != nil {
		t.Fatal(err)
	}
	d := enroll(t, h, "pc-x")
	_, good := seed("hostile-good-seed")
	_, good2 := seed("hostile-good-2")
	shortSeed := b32.EncodeToString([]byte("0123456789")) // 80 bits
	var huge strings.Builder
	for i := range 12000 {
		fmt.Fprintf(&huge, "SN-%d,user%d,%s\n", i, i, good)
	}
	badUsers := []string{"", "Tanaka", "tanaka\x1b[31m", "ta\nnaka", "tanaka\x00", strings.Repeat("a", 300), "../etc", "山田"}

	imports := []struct {
		name    string
		csv     string
		replace bool
		code    codes.Code
		want    []string
	}{
		{"bad base32", "SN-1,sato,not*base32!\n", false, codes.InvalidArgument, []string{"line 1", "not base32"}},
		{"short seed", "SN-1,sato," + shortSeed + "\n", false, codes.InvalidArgument, []string{"line 1", "80 bits"}},
		{"duplicate user", "SN-1,sato," + good + "\nSN-2,sato," + good2 + "\n", false, codes.InvalidArgument, []string{"line 2", "also on line 1"}},
		{"duplicate serial", "SN-1,sato," + good + "\nSN-1,kato," + good2 + "\n", false, codes.InvalidArgument, []string{"line 2", "serial SN-1"}},
		{"control characters in a user", "SN-1,\"sa\x1bto\"," + good + "\n", false, codes.InvalidArgument, []string{"line 1", `\x1b`}},
		{"newline in a quoted user", "SN-1,\"sa\nto\"," + good + "\n", false, codes.InvalidArgument, []string{"line 1", "user"}},
		{"two fields", "SN-1,sato\n", false, codes.InvalidArgument, []string{"line 1", "2 fields"}},
		{"bad quoting", "SN-1,\"sato," + good + "\n", false, codes.InvalidArgument, []string{"not CSV"}},
		{"bad rows among good ones", "SN-1,kato," + good + "\nSN-2,Sato," + good2 + "\n", false, codes.InvalidArgument, []string{"line 2"}},
		{"already enrolled", "serial,user,seed\nSN-1,tanaka," + good + "\n", false, codes.InvalidArgument, []string{"line 2", "already enrolled"}},
		{"not UTF-8", "SN-1,sato\xff," + good + "\n", false, codes.InvalidArgument, []string{"UTF-8"}},
		{"empty", "", false, codes.InvalidArgument, []string{"no rows"}},
		{"header only", "serial,user,seed\n", false, codes.InvalidArgument, []string{"no rows"}},
		{"too many rows", huge.String(), false, codes.InvalidArgument, []string{"more than 10000 rows"}},
		{"over a MiB", strings.Repeat("SN-1,sato,"+good+"\n", (1<<20)/40+10), false, codes.InvalidArgument, []string{"at most 1048576"}},
		{"over the message limit", strings.Repeat("x", 5<<20), false, codes.ResourceExhausted, nil},
	}
	gen := func() int64 {
		g, err := h.Srv.Store().MFAGeneration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g0 := gen()
	for _, tc := range imports {
		t.Run("import/"+tc.name, func(t *testing.T) {
			_, err := officer.ImportMFASeeds(ctx, &mamoriv1.ImportMFASeedsRequest{Csv: []byte(tc.csv), Replace: tc.replace},
				grpc.MaxCallSendMsgSize(16<<20))
			wantCode(t, err, tc.code)
			msg := status.Convert(err).Message()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			for _, s := range []string{good, good2, shortSeed, strings.ToLower(good)} {
				if strings.Contains(msg, s) {
					t.Errorf("error echoes a seed: %q", msg)
				}
			}
			if len(msg) > 4096 {
				t.Errorf("error is %d bytes", len(msg))
			}
		})
	}
	if g := gen(); g != g0 {
		t.Fatalf("refused imports moved the MFA generation %d → %d", g0, g)
	}
	if us, _ := h.Srv.Store().MFAUsers(ctx); len(us) != 1 {
		t.Fatalf("refused imports wrote users: %d", len(us))
	}

	for _, u := range badUsers {
		_, err := officer.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: u})
		wantCode(t, err, codes.InvalidArgument)
		_, err = officer.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: u})
		wantCode(t, err, codes.InvalidArgument)
		_, err = officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: u})
		wantCode(t, err, codes.InvalidArgument)
	}
	for _, exp := range []*durationpb.Duration{durationpb.New(30 * time.Second), durationpb.New(25 * time.Hour),
		durationpb.New(-time.Hour), {Seconds: 60, Nanos: -1}, {Seconds: 1 << 62}} {
		_, err := officer.IssueMFATempCode(ctx, &mamoriv1.IssueMFATempCodeRequest{User: "tanaka", ExpiresIn: exp})
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err := officer.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka", DeviceId: "no-such-device"})
	wantCode(t, err, codes.NotFound)
	_, err = officer.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka", DeviceId: strings.Repeat("x", 1000)})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := officer.UnlockMFAUser(ctx, &mamoriv1.UnlockMFAUserRequest{User: "tanaka", DeviceId: d.ID}); err != nil {
		t.Fatalf("unlock on a known device: %v", err)
	}
	_, err = officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "tanaka", Reason: strings.Repeat("r", 600)})
	wantCode(t, err, codes.InvalidArgument)
	_, err = officer.ResetMFAUser(ctx, &mamoriv1.ResetMFAUserRequest{User: "nobody"})
	wantCode(t, err, codes.NotFound)

	// A report claiming 1,000 code uses of 1,000 users is stored; it
	// causes at most a bounded number of consumption transactions.
	var flood []*mamoriv1.Event
	for i := range 1000 {
		flood = append(flood, usedEvent("mfa_recovery_used", fmt.Sprintf("user%d", i), fmt.Sprintf("%016x", i)))
	}
	start := time.Now()
	if _, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}, Events: flood}); err != nil {
		t.Fatalf("report with 1,000 code uses: %v", err)
	}
	t.Logf("report with 1,000 code-use events of 1,000 users: %v", time.Since(start))

	// The enrolment URI still parses after everything above (the server
	// kept working).
	en, err := officer.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "suzuki"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(en.OtpauthUri)
	if _, err := totp.ParseBase32(u.Query().Get("secret")); err != nil {
		t.Fatal(err)
	}
}
