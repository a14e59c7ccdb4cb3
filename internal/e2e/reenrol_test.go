package e2e

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/pki"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// builtBins are the real binaries built for this test run, by package.
var builtBins struct {
	sync.Mutex
	m map[string]*builtBin
}

type builtBin struct {
	once sync.Once
	path string
	err  error
}

// buildOnce builds the command in pkg (relative to this package) into a
// temporary directory once per test run and returns its path.
func buildOnce(t *testing.T, pkg, name string) string {
	t.Helper()
	builtBins.Lock()
	if builtBins.m == nil {
		builtBins.m = map[string]*builtBin{}
	}
	b := builtBins.m[pkg]
	if b == nil {
		b = &builtBin{}
		builtBins.m[pkg] = b
	}
	builtBins.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", name+"-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = &buildError{out: string(out), err: err}
		}
	})
	if b.err != nil {
		t.Fatalf("build %s: %v", name, b.err)
	}
	return b.path
}

// buildAgent builds the real mamori-agent binary once per test run.
func buildAgent(t *testing.T) string {
	return buildOnce(t, "../../agent/cmd/mamori-agent", "mamori-agent")
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// agentEnroll runs `mamori-agent enroll` (the real binary) with its own
// state directory; this machine's /etc/machine-id is its machine ID, as
// for any local user who runs it.
func agentEnroll(t *testing.T, h *servertest.Harness, stateDir, token string) (string, error) {
	t.Helper()
	cmd := exec.Command(buildAgent(t), "enroll", "--state-dir", stateDir,
		"--server", h.Addr, "--token", token, "--ca-fingerprint", h.Srv.Boot.CAFingerprint)
	cmd.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// identityClient is an agent client with the identity in stateDir.
func identityClient(t *testing.T, h *servertest.Harness, stateDir string) (string, mamoriv1.AgentServiceClient) {
	t.Helper()
	dir, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	id, err := dir.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key}
	cc := h.Dial(t, pki.ClientTLSConfig(h.CAPool(), &cert, "localhost"))
	return id.Device.DeviceID, mamoriv1.NewAgentServiceClient(cc)
}

func reportOnce(c mamoriv1.AgentServiceClient) error {
	_, err := c.Report(ctx, &mamoriv1.ReportRequest{Statuses: []*mamoriv1.ControlStatus{{
		Control: "agent", Mode: mamoriv1.Mode_MODE_ENFORCE, State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED}}})
	return err
}

// TestReenrolmentNeedsProofAgentBinary: the real mamori-agent binary
// against the real server. Re-running enrol on an enrolled terminal
// proves its current key: same device. Another state directory on the
// same machine (anyone who can read /etc/machine-id and holds a token)
// makes a new record flagged as a possible clone; the enrolled device
// keeps working, untouched. After revocation, neither the device's own
// re-enrolment nor a claim of its machine ID un-revokes it.
func TestReenrolmentNeedsProofAgentBinary(t *testing.T) {
	testenv.Short(t)
	if _, err := os.Stat("/etc/machine-id"); err != nil {
		testenv.Unavailable(t, "no /etc/machine-id (the agent's machine ID): run systemd-machine-id-setup")
	}
	h := servertest.Start(t, servertest.Options{})
	admin := h.Admin(t, h.AdminToken)
	victimDir := filepath.Join(t.TempDir(), "victim")
	if out, err := agentEnroll(t, h, victimDir, h.Token(t, 1, 0)); err != nil {
		t.Fatalf("first enrolment: %v\n%s", err, out)
	}
	victimID, victim := identityClient(t, h, victimDir)
	if err := reportOnce(victim); err != nil {
		t.Fatal(err)
	}

	// Re-enrolment by the terminal itself: same device, new certificate.
	if out, err := agentEnroll(t, h, victimDir, h.Token(t, 1, 0)); err != nil {
		t.Fatalf("re-enrolment with the current key: %v\n%s", err, out)
	}
	againID, again := identityClient(t, h, victimDir)
	if againID != victimID {
		t.Fatalf("re-enrolment with the current key made device %s, want %s", againID, victimID)
	}
	if status.Code(reportOnce(victim)) != codes.Unauthenticated {
		t.Error("the superseded certificate still reports")
	}
	if err := reportOnce(again); err != nil {
		t.Fatal(err)
	}
	before, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: victimID})
	if err != nil {
		t.Fatal(err)
	}

	// The attacker: same machine ID, a token, no key.
	attackerDir := filepath.Join(t.TempDir(), "attacker")
	if out, err := agentEnroll(t, h, attackerDir, h.Token(t, 1, 0)); err != nil {
		t.Fatalf("attacker's enrolment: %v\n%s", err, out)
	}
	cloneID, _ := identityClient(t, h, attackerDir)
	if cloneID == victimID {
		t.Fatal("token + the victim's machine ID re-enrolled the victim")
	}
	clone, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: cloneID})
	if err != nil || clone.GetDevice().GetCloneOf() != victimID {
		t.Fatalf("attacker's record: clone_of %q (%v), want %s", clone.GetDevice().GetCloneOf(), err, victimID)
	}
	if err := reportOnce(again); err != nil {
		t.Fatalf("victim after the attacker enrolled: %v", err)
	}
	after, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: victimID})
	if err != nil {
		t.Fatal(err)
	}
	if !after.GetDevice().GetEnrolledAt().AsTime().Equal(before.GetDevice().GetEnrolledAt().AsTime()) || after.GetDevice().GetRevokedAt() != nil {
		t.Errorf("victim's record changed: enrolled %v → %v, revoked %v", before.GetDevice().GetEnrolledAt().AsTime(),
			after.GetDevice().GetEnrolledAt().AsTime(), after.GetDevice().GetRevokedAt())
	}
	if out := mamorictl(t, h, "C", "device", "show", cloneID); !strings.Contains(out, "Possible clone") || !strings.Contains(out, victimID) {
		t.Errorf("mamorictl device show of the clone:\n%s", out)
	}

	// Revoked stays revoked.
	mamorictl(t, h, "C", "device", "revoke", victimID, "--reason", "stolen")
	out, err := agentEnroll(t, h, victimDir, h.Token(t, 1, 0))
	if err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("re-enrolment of a revoked device: %v\n%s", err, out)
	}
	if out, err := agentEnroll(t, h, filepath.Join(t.TempDir(), "thief"), h.Token(t, 1, 0)); err != nil {
		t.Fatalf("thief's enrolment: %v\n%s", err, out)
	}
	got, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: victimID})
	if err != nil || got.GetDevice().GetRevokedAt() == nil || got.GetDevice().GetCompliance() != mamoriv1.Compliance_COMPLIANCE_REVOKED {
		t.Errorf("revoked device after enrolments: %v (%v)", got.GetDevice(), err)
	}
	if status.Code(reportOnce(again)) != codes.PermissionDenied {
		t.Error("the revoked device reports")
	}
}
