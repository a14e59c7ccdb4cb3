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
// over mutual TLS signing with the TPM-resident key, and the server shows
// the device as TPM-attested. Enrolling again from another state directory
// on the same TPM (another machine ID) is the same device. Copying the
// state directory to another machine yields no identity.
func TestTPMEnrolmentEndToEnd(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	tp := tpmtest.Open(t, 1)
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tp)
	res, err := enrolTPM(t, h, dir, "tpm-pc")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if !res.Attested {
		t.Error("enrolment with a TPM key was not attested")
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
	if !d.GetKeyAttested() || len(d.GetEkFingerprint()) != 64 || d.GetLastSeen() == nil {
		t.Errorf("device after a report: attested %v ek %q last_seen %v", d.GetKeyAttested(), d.GetEkFingerprint(), d.GetLastSeen())
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
	if !res2.Attested {
		t.Error("second enrolment on the same TPM was not attested")
	}
	if res2.Identity.Device.DeviceID != res.Identity.Device.DeviceID {
		t.Errorf("same EK enrolled as device %s, want %s", res2.Identity.Device.DeviceID, res.Identity.Device.DeviceID)
	}

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

// TestTPMEnrolmentEndToEndSwtpm: attested enrolment and a report over
// mTLS with the key in swtpm, a TPM in another process; a second swtpm is
// another machine.
func TestTPMEnrolmentEndToEndSwtpm(t *testing.T) {
	h := servertest.Start(t, servertest.Options{})
	dir := tpmDir(t, filepath.Join(t.TempDir(), "state"), tpmtest.Swtpm(t))
	res, err := enrolTPM(t, h, dir, "swtpm-pc")
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if !res.Attested {
		t.Error("not attested")
	}
	a := startAgent(t, dir, h.Clock.Now, "swtpm-pc")
	a.waitRound(t, "a stored report over mTLS with the swtpm key", func(r daemon.RoundResult) bool { return r.Err == nil })
	a.stop()
	got, err := h.Admin(t, h.AdminToken).GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: "swtpm-pc"})
	if err != nil || !got.GetDevice().GetKeyAttested() || got.GetDevice().GetLastSeen() == nil {
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
