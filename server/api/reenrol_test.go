package api_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mamori-dev/mamori/internal/pki"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/auth"
	"github.com/mamori-dev/mamori/server/servertest"
)

func report(t *testing.T, d *servertest.Device) error {
	t.Helper()
	_, err := d.Client.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{enforced("agent")}})
	return err
}

// The reproduction: a valid token plus another device's machine ID (which
// every local user can read) used to re-enrol that device: new
// certificate, the victim's superseded, the token's group applied. Now it
// makes a new record flagged as a possible clone; the victim keeps its
// certificate, hostname and group. An officer can approve the new record
// as the re-imaged terminal (audited); the old one is then revoked.
func TestReenrolClaimedMachineIDMakesClone(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	victim, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-victim", "machine-victim"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetDeviceGroup(ctx, &mamoriv1.SetDeviceGroupRequest{Device: victim.ID, Group: "税務課", Reason: "配属"}); err != nil {
		t.Fatal(err)
	}
	if err := report(t, victim); err != nil {
		t.Fatal(err)
	}
	before := deviceState(t, h, victim.ID)

	grp, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 1, Group: "教育委員会"})
	if err != nil {
		t.Fatal(err)
	}
	clone, err := h.Enroll(t, grp.Token, servertest.Facts("pc-attacker", "machine-victim"))
	if err != nil {
		t.Fatal(err)
	}
	if clone.ID == victim.ID {
		t.Fatal("a claimed machine ID re-enrolled the victim")
	}
	if err := report(t, victim); err != nil {
		t.Fatalf("victim's certificate after the clone enrolled: %v", err)
	}
	after := deviceState(t, h, victim.ID)
	if after.Facts.GetHostname() != "pc-victim" || after.Group != "税務課" || after.RevokedAt != nil || !after.EnrolledAt.AsTime().Equal(before.EnrolledAt.AsTime()) {
		t.Errorf("victim changed: hostname %q group %q revoked %v enrolled %v (was %v)",
			after.Facts.GetHostname(), after.Group, after.RevokedAt, after.EnrolledAt.AsTime(), before.EnrolledAt.AsTime())
	}
	c := deviceState(t, h, clone.ID)
	if c.CloneOf != victim.ID {
		t.Fatalf("new record clone_of = %q, want %s", c.CloneOf, victim.ID)
	}

	// Approval is an officer's; helpdesk is refused.
	helpdesk := h.Admin(t, h.Operator(t, "helpdesk-1", auth.RoleHelpdesk))
	_, err = helpdesk.ApproveReenrollment(ctx, &mamoriv1.ApproveReenrollmentRequest{Device: clone.ID, Reason: "x"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = admin.ApproveReenrollment(ctx, &mamoriv1.ApproveReenrollmentRequest{Device: victim.ID, Reason: "not flagged"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = admin.ApproveReenrollment(ctx, &mamoriv1.ApproveReenrollmentRequest{Device: "no-such-device", Reason: "x"})
	wantCode(t, err, codes.NotFound)
	ok, err := admin.ApproveReenrollment(ctx, &mamoriv1.ApproveReenrollmentRequest{Device: clone.ID, Reason: "再イメージ化を現地で確認"})
	if err != nil {
		t.Fatal(err)
	}
	if ok.Device.CloneOf != "" || ok.Device.Facts.GetMachineId() != "machine-victim" || ok.Replaced.RevokedAt == nil {
		t.Errorf("approved: clone_of %q machine %q; replaced revoked %v", ok.Device.CloneOf, ok.Device.Facts.GetMachineId(), ok.Replaced.RevokedAt)
	}
	wantCode(t, report(t, victim), codes.PermissionDenied)
	if err := report(t, clone); err != nil {
		t.Errorf("approved record's report: %v", err)
	}
	audit, err := admin.ListAudit(ctx, &mamoriv1.ListAuditRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var enrolRec, approveRec *mamoriv1.AuditRecord
	for _, r := range audit.Records {
		switch {
		case r.Action == "device.enroll" && r.Target == clone.ID:
			enrolRec = r
		case r.Action == "device.approve-reenrolment":
			approveRec = r
		}
	}
	if enrolRec == nil || !strings.Contains(enrolRec.Detail, "possible_clone_of="+victim.ID) {
		t.Errorf("clone's enrolment record: %v", enrolRec)
	}
	if approveRec == nil || approveRec.Target != clone.ID || !strings.Contains(approveRec.Detail, "replaces="+victim.ID) ||
		!strings.Contains(approveRec.Detail, "再イメージ化") {
		t.Errorf("approval record: %v", approveRec)
	}
}

// A revoked device is never un-revoked by enrolment: with its own key it
// is refused; with its machine ID alone it is a new flagged record; the
// revoked record stays revoked.
func TestReenrolRevokedStaysRevoked(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	d := enroll(t, h, "pc-stolen")
	if _, err := admin.RevokeDevice(ctx, &mamoriv1.RevokeDeviceRequest{DeviceId: d.ID, Reason: "盗難"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.Reenroll(t, h.Token(t, 1, 0), servertest.Facts("pc-stolen", "machine-pc-stolen"), d)
	wantCode(t, err, codes.PermissionDenied)
	c, err := h.Enroll(t, h.Token(t, 1, 0), servertest.Facts("pc-thief", "machine-pc-stolen"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == d.ID || deviceState(t, h, c.ID).CloneOf != d.ID {
		t.Fatalf("machine ID of a revoked device made %s (clone of %q)", c.ID, deviceState(t, h, c.ID).CloneOf)
	}
	got := deviceState(t, h, d.ID)
	if got.RevokedAt == nil || got.Compliance != mamoriv1.Compliance_COMPLIANCE_REVOKED {
		t.Errorf("revoked device after enrolments: revoked %v compliance %v", got.RevokedAt, got.Compliance)
	}
	wantCode(t, report(t, d), codes.PermissionDenied)
}

// Hostile key proofs: a certificate of another CA, a signature by another
// key or over another CSR, garbage and oversized fields. None re-enrols
// the device; the refusals say why without naming secrets.
func TestKeyProofRefusals(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	d := enroll(t, h, "pc-proof")
	tok := h.Token(t, 20, 0)
	otherCA, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewDeviceKey()
	csr, _ := pki.NewCSR(key, "pc-proof")
	foreignCSR, _ := pki.NewCSR(key, "pc-other")
	foreign, _, err := otherCA.SignDeviceCSR(foreignCSR, d.ID, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k *ecdsa.PrivateKey, msg []byte) []byte {
		s, err := ecdsa.SignASN1(rand.Reader, k, pki.ReenrollDigest(msg))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cert := d.Cert.Certificate[0]
	for _, tc := range []struct {
		name  string
		proof *mamoriv1.KeyProof
		code  codes.Code
	}{
		{"another CA's certificate", &mamoriv1.KeyProof{Certificate: foreign, Signature: sign(key, csr)}, codes.PermissionDenied},
		{"signed by another key", &mamoriv1.KeyProof{Certificate: cert, Signature: sign(key, csr)}, codes.PermissionDenied},
		{"signed over another CSR", &mamoriv1.KeyProof{Certificate: cert, Signature: sign(d.Key, foreignCSR)}, codes.PermissionDenied},
		{"garbage certificate", &mamoriv1.KeyProof{Certificate: []byte("not DER"), Signature: sign(d.Key, csr)}, codes.InvalidArgument},
		{"empty signature", &mamoriv1.KeyProof{Certificate: cert}, codes.InvalidArgument},
		{"oversized certificate", &mamoriv1.KeyProof{Certificate: make([]byte, 64<<10), Signature: []byte{1}}, codes.InvalidArgument},
		{"oversized signature", &mamoriv1.KeyProof{Certificate: cert, Signature: make([]byte, 64<<10)}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), nil, "localhost"))
			_, err := mamoriv1.NewAgentServiceClient(cc).Enroll(ctx, &mamoriv1.EnrollRequest{Token: tok, Csr: csr,
				Facts: servertest.Facts("pc-proof", "machine-pc-proof"), KeyProof: tc.proof})
			wantCode(t, err, tc.code)
		})
	}
	if err := report(t, d); err != nil {
		t.Fatalf("device after hostile proofs: %v", err)
	}
	if f := fleet(t, h); f.Total != 1 {
		t.Errorf("hostile proofs wrote devices: total %d", f.Total)
	}
	// The proof of a key the device had before a re-enrolment is no
	// proof: a new flagged record, the device untouched.
	re, _, err := h.Reenroll(t, tok, servertest.Facts("pc-proof", "machine-pc-proof"), d)
	if err != nil || re.ID != d.ID {
		t.Fatalf("re-enrolment with the current key: %v, %v", re, err)
	}
	old, _, err := h.Reenroll(t, tok, servertest.Facts("pc-old", "machine-pc-proof"), d)
	if err != nil {
		t.Fatal(err)
	}
	if old.ID == d.ID || deviceState(t, h, old.ID).CloneOf != d.ID {
		t.Errorf("proof of a superseded key made %s (clone of %q)", old.ID, deviceState(t, h, old.ID).CloneOf)
	}
	if err := report(t, re); err != nil {
		t.Errorf("device after a superseded key's proof: %v", err)
	}
}

// Hostile input to the new officer actions: malformed, oversized and
// control characters are refused as InvalidArgument and write nothing;
// an approved EK is listed once with who approved it.
func TestApproveHostileInput(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	good := strings.Repeat("ab", 32)
	for name, req := range map[string]*mamoriv1.ApproveEKRequest{
		"not hex":       {EkFingerprint: strings.Repeat("zz", 32), Note: "x"},
		"short":         {EkFingerprint: "abcd", Note: "x"},
		"oversized":     {EkFingerprint: strings.Repeat("a", 64<<10), Note: "x"},
		"NUL":           {EkFingerprint: good[:62] + "\x00a", Note: "x"},
		"no reason":     {EkFingerprint: good},
		"huge reason":   {EkFingerprint: good, Note: strings.Repeat("理", 10000)},
		"bidi reason":   {EkFingerprint: good, Note: "ok\u202egnp.exe"},
		"empty":         {},
		"reason is NUL": {EkFingerprint: good, Note: "\x00"},
	} {
		t.Run("ek "+name, func(t *testing.T) {
			_, err := admin.ApproveEK(ctx, req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	for name, req := range map[string]*mamoriv1.ApproveReenrollmentRequest{
		"no device":  {Reason: "x"},
		"oversized":  {Device: strings.Repeat("d", 64<<10), Reason: "x"},
		"no reason":  {Device: "x"},
		"NUL device": {Device: "a\x00b", Reason: "x"},
	} {
		t.Run("approve "+name, func(t *testing.T) {
			_, err := admin.ApproveReenrollment(ctx, req)
			wantCode(t, err, codes.InvalidArgument, codes.NotFound)
		})
	}
	list, err := admin.ListApprovedEKs(ctx, &mamoriv1.ListApprovedEKsRequest{})
	if err != nil || len(list.Eks) != 0 {
		t.Fatalf("approved EKs after refusals: %v %v", list, err)
	}
	for i, want := range []bool{true, false} {
		r, err := admin.ApproveEK(ctx, &mamoriv1.ApproveEKRequest{EkFingerprint: strings.ToUpper(good), Note: "現地確認"})
		if err != nil || r.Added != want {
			t.Fatalf("approval %d: added %v (%v), want %v", i, r.GetAdded(), err, want)
		}
	}
	list, err = admin.ListApprovedEKs(ctx, &mamoriv1.ListApprovedEKsRequest{})
	if err != nil || len(list.Eks) != 1 || list.Eks[0].EkFingerprint != good || list.Eks[0].ApprovedBy == "" {
		t.Fatalf("approved EKs: %v %v", list, err)
	}
	helpdesk := h.Admin(t, h.Operator(t, "hd", auth.RoleHelpdesk))
	_, err = helpdesk.ApproveEK(ctx, &mamoriv1.ApproveEKRequest{EkFingerprint: good, Note: "x"})
	wantCode(t, err, codes.PermissionDenied)
}
