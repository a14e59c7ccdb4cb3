package e2e

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/tpm"
	"github.com/mamori-dev/mamori/internal/tpm/tpmtest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

func tpmDir(t *testing.T, path string, tp transport.TPMCloser) *state.Dir {
	t.Helper()
	dir, err := state.OpenWith(path, state.Options{OpenTPM: func() (transport.TPMCloser, error) { return tp, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func enrolTPM(t *testing.T, h *servertest.Harness, dir *state.Dir, host string) (*enroll.Result, error) {
	t.Helper()
	f, _ := testFacts(host)(ctx)
	return enroll.Enroll(ctx, slog.New(slog.DiscardHandler), dir, enroll.Params{
		Servers: []string{h.Addr}, Token: config.Secret(h.Token(t, 1, 0)),
		CAFingerprint: h.Srv.Boot.CAFingerprint, Facts: f, Now: h.Clock.Now,
	})
}

// TestTPMEnrolmentEndToEnd: a terminal with a (simulated) TPM enrols with
// attestation through the agent's own code, the real agent core reports
// over mutual TLS signing with the TPM-resident key. With no vendor roots
// configured and the EK not approved, the key is "TPM key, not attested"
// (it used to be marked attested: any EK passed). Enrolling again from
// another state directory on the same TPM (another machine ID) is the same
// device: the EK was proven. Once an officer approves the EK (mamorictl
// tpm approve-ek), the next enrolment is attested. Copying the state
// directory to another machine yields no identity.
func TestTPMEnrolmentEndToEnd(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tp := tpmtest.Open(t, 1)
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tp)
	res, err := enrolTPM(t, h, dir, "tpm-pc")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if res.Attested {
		t.Error("an unverified EK (no vendor root, not approved) was attested")
	}
	if _, ok := res.Identity.Key.(*tpm.Key); !ok {
		t.Fatalf("identity key is %T, want a TPM key", res.Identity.Key)
	}

	admin := h.Admin(t, h.AdminToken)
	got, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: res.Identity.Device.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if ks := got.GetDevice().GetFacts().GetKeyStorage(); ks != "tpm" {
		t.Errorf("enrolled key_storage fact %q, want tpm", ks)
	}

	a := startAgent(t, dir, h.Clock.Now, "tpm-pc")
	a.waitRound(t, "a stored report over mTLS with the TPM key", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()

	got, err = admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: res.Identity.Device.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	d := got.GetDevice()
	if d.GetKeyAttested() || len(d.GetEkFingerprint()) != 64 || d.GetLastSeen() == nil {
		t.Errorf("device after a report: attested %v ek %q last_seen %v; want not attested, an EK", d.GetKeyAttested(), d.GetEkFingerprint(), d.GetLastSeen())
	}
	if out := mamorictl(t, h, "C", "device", "show", d.GetId()); !strings.Contains(out, "TPM key, not attested: EK "+d.GetEkFingerprint()) {
		t.Errorf("mamorictl device show does not say 'TPM key, not attested':\n%s", out)
	}

	// Same TPM, new installation (fresh state dir, another machine ID):
	// the EK names the device.
	// The simulator holds three transient objects (a real TPM behind
	// /dev/tpmrm0 is virtualised): unload the first key; it would reload
	// on its next signature.
	res.Identity.Key.(*tpm.Key).Close()
	again := tpmDir(t, filepath.Join(t.TempDir(), "reinstalled"), tp)
	res2, err := enrolTPM(t, h, again, "tpm-pc-reimaged")
	if err != nil {
		t.Fatalf("re-enrol: %v", err)
	}
	if res2.Attested {
		t.Error("second enrolment on the same TPM was attested before the EK was approved")
	}
	if res2.Identity.Device.DeviceID != res.Identity.Device.DeviceID {
		t.Errorf("same EK enrolled as device %s, want %s", res2.Identity.Device.DeviceID, res.Identity.Device.DeviceID)
	}

	// The officer approves the EK; the terminal enrols again and is
	// attested.
	mamorictl(t, h, "C", "tpm", "approve-ek", d.GetEkFingerprint(), "--reason", "checked the TPM in person")
	if out := mamorictl(t, h, "C", "tpm", "list-eks"); !strings.Contains(out, d.GetEkFingerprint()) {
		t.Errorf("tpm list-eks: %s", out)
	}
	res2.Identity.Key.(*tpm.Key).Close()
	third := tpmDir(t, filepath.Join(t.TempDir(), "approved"), tp)
	res3, err := enrolTPM(t, h, third, "tpm-pc-reimaged")
	if err != nil {
		t.Fatalf("enrol after approval: %v", err)
	}
	if !res3.Attested || res3.Identity.Device.DeviceID != res.Identity.Device.DeviceID {
		t.Errorf("after approving the EK: attested %v device %s; want true, %s", res3.Attested, res3.Identity.Device.DeviceID, res.Identity.Device.DeviceID)
	}
	res3.Identity.Key.(*tpm.Key).Close()
	third.Close()

	// The state directory copied to another machine with another TPM.
	stolen := filepath.Join(t.TempDir(), "stolen")
	if err := os.CopyFS(stolen, os.DirFS(again.Path())); err != nil {
		t.Fatal(err)
	}
	again.Close()
	dir.Close()
	other := tpmtest.Open(t, 2)
	if _, err := tpmDir(t, stolen, other).LoadIdentity(); !errors.Is(err, state.ErrNotEnrolled) {
		t.Fatalf("copied state directory on another TPM: %v, want no identity", err)
	}
}

// TestRequireTPMKey: with the policy setting agent.require_tpm_key, a
// terminal whose key is a file (no TPM) is non-compliant, and says why.
func TestRequireTPMKey(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.GetPolicy()
	ag := p.GetControls()["agent"]
	if ag.Settings == nil {
		ag.Settings = map[string]string{}
	}
	ag.Settings["require_tpm_key"] = "true"
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.GetVersion(), Reason: "TPM keys only"}); err != nil {
		t.Fatal(err)
	}
	dir, err := state.OpenWith(filepath.Join(t.TempDir(), "state"), state.Options{OpenTPM: state.NoTPM})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := testFacts("no-tpm-pc")(ctx)
	if _, err := enroll.Enroll(ctx, slog.New(slog.DiscardHandler), dir, enroll.Params{
		Servers: []string{h.Addr}, Token: config.Secret(h.Token(t, 1, 0)),
		CAFingerprint: h.Srv.Boot.CAFingerprint, Facts: f, Now: h.Clock.Now,
	}); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, dir, h.Clock.Now, "no-tpm-pc")
	a.waitRound(t, "a stored report", func(r daemon.RoundResult) bool { return r.Err == nil })
	got, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "no-tpm-pc"})
	if err != nil {
		t.Fatal(err)
	}
	d := got.GetDevice()
	if d.GetCompliance() != mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT || len(d.GetReasons()) == 0 ||
		!strings.Contains(d.GetReasons()[0], "device key in a TPM") {
		t.Errorf("file-key device under require_tpm_key: %v %q", d.GetCompliance(), d.GetReasons())
	}
	if d.GetKeyAttested() {
		t.Error("a file key is shown as attested")
	}
}

// TestTPMEnrolmentEKChainedToRoot: a TPM whose EK certificate chains to
// a root given with --ek-roots is attested (the simulator provisioned
// like a manufacturer does); the same TPM against a server without that
// root is not.
func TestTPMEnrolmentEKChainedToRoot(t *testing.T) {
	tp := tpmtest.Open(t, 3)
	rootPEM := tpmtest.ProvisionEKCert(t, tp)
	roots := filepath.Join(t.TempDir(), "ek-roots.pem")
	if err := os.WriteFile(roots, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h := servertest.Start(t, servertest.Options{EKRootsFile: roots})
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tp)
	res, err := enrolTPM(t, h, dir, "vendor-pc")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if !res.Attested {
		t.Fatal("an EK chained to a configured root was not attested")
	}
	got, err := h.Admin(t, h.AdminToken).GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: res.Identity.Device.DeviceID})
	if err != nil || !got.GetDevice().GetKeyAttested() {
		t.Fatalf("device: %v, %v", got.GetDevice(), err)
	}
	res.Identity.Key.(*tpm.Key).Close()

	other := servertest.Start(t, servertest.Options{})
	dir2 := tpmDir(t, filepath.Join(t.TempDir(), "state2"), tp)
	res2, err := enrolTPM(t, other, dir2, "vendor-pc")
	if err != nil {
		t.Fatal(err)
	}
	if res2.Attested {
		t.Error("attested by a server without the vendor root")
	}
	if _, ok := res2.Identity.Key.(*tpm.Key); !ok {
		t.Errorf("second key is %T, want a TPM key", res2.Identity.Key)
	}
}

// TestRequireTPMKeyUnverifiedEK: under require_tpm_key a TPM key whose EK
// is not verified is non-compliant: "TPM key, not attested" is not good
// enough.
func TestRequireTPMKeyUnverifiedEK(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.GetPolicy()
	ag := p.GetControls()["agent"]
	if ag.Settings == nil {
		ag.Settings = map[string]string{}
	}
	ag.Settings["require_tpm_key"] = "true"
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.GetVersion(), Reason: "TPM keys only"}); err != nil {
		t.Fatal(err)
	}
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tpmtest.Open(t, 4))
	if _, err := enrolTPM(t, h, dir, "unverified-pc"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, dir, h.Clock.Now, "unverified-pc")
	a.waitRound(t, "a stored report", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	got, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "unverified-pc"})
	if err != nil {
		t.Fatal(err)
	}
	if d := got.GetDevice(); d.GetCompliance() != mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT || d.GetKeyAttested() {
		t.Errorf("unverified TPM key under require_tpm_key: %v attested %v %q", d.GetCompliance(), d.GetKeyAttested(), d.GetReasons())
	}
}

// TestTPMEnrolmentEndToEndSwtpm: enrolment and a report over mTLS with
// the key in swtpm, a TPM in another process. swtpm's EK chains to no
// configured root, so it is not attested (it used to pass); a second
// swtpm is another machine.
func TestTPMEnrolmentEndToEndSwtpm(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tpmtest.Swtpm(t))
	res, err := enrolTPM(t, h, dir, "swtpm-pc")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if res.Attested {
		t.Error("swtpm's unverified EK was attested")
	}
	a := startAgent(t, dir, h.Clock.Now, "swtpm-pc")
	a.waitRound(t, "a stored report over mTLS with the swtpm key", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	got, err := h.Admin(t, h.AdminToken).GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "swtpm-pc"})
	if err != nil || got.GetDevice().GetKeyAttested() || got.GetDevice().GetEkFingerprint() == "" || got.GetDevice().GetLastSeen() == nil {
		t.Fatalf("device: %v, %v", got.GetDevice(), err)
	}
	stolen := filepath.Join(t.TempDir(), "stolen")
	if err := os.CopyFS(stolen, os.DirFS(dir.Path())); err != nil {
		t.Fatal(err)
	}
	if _, err := tpmDir(t, stolen, tpmtest.Swtpm(t)).LoadIdentity(); !errors.Is(err, state.ErrNotEnrolled) {
		t.Fatalf("copied state directory on another swtpm: %v, want no identity", err)
	}
}
