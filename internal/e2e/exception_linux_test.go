package e2e

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/config"
	"github.com/mamori-dev/mamori/agent/control"
	"github.com/mamori-dev/mamori/agent/daemon"
	"github.com/mamori-dev/mamori/agent/enroll"
	"github.com/mamori-dev/mamori/agent/media"
	"github.com/mamori-dev/mamori/agent/spool"
	"github.com/mamori-dev/mamori/agent/state"
	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/internal/testenv"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
)

// The phone in the captured sysfs tree (18d1:4ee1, serial
// 98281FFAZ009SR, an MTP interface at 1-5:1.0).
const (
	phoneUSB   = "18d1:4ee1:98281FFAZ009SR"
	phoneIface = "bus/usb/devices/1-5:1.0/authorized"
)

type sessionUsers []string

func (u sessionUsers) Users(context.Context) ([]string, error) { return u, nil }

// TestExceptionReachesAgent: policy mtp=block keeps the phone
// deauthorised; an officer approves an exception for it on this terminal;
// the next report carries the new effective policy (same version, new
// digest), the real media engine authorises the phone and records
// media_exception_used, which the server stores; revoking the exception
// blocks the phone again.
func TestExceptionReachesAgent(t *testing.T) {
	testenv.RequireRoot(t) // the media engine listens to kernel uevents
	h := servertest.Start(t, servertest.Options{})
	ctx := t.Context()
	admin := h.Admin(t, h.AdminToken)
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := cur.Policy
	p.Controls[policy.ControlMedia] = &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{"storage": "allow", "optical": "allow", "mtp": "block"}}
	p.ReportInterval, p.MaxReportAge = durationpb.New(5*time.Second), durationpb.New(time.Minute)
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "e2e"}); err != nil {
		t.Fatal(err)
	}

	sys := t.TempDir()
	if out, err := exec.Command("cp", "-a", "../../testdata/sysfs/mixed/.", sys).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	mi := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mi, []byte("22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	facts := func(context.Context) (*mamoriv1.DeviceFacts, error) {
		return servertest.Facts("pc-e2e", "machine-e2e"), nil
	}
	f, _ := facts(ctx)
	r, err := enroll.Enroll(ctx, slog.New(slog.DiscardHandler), dir, enroll.Params{
		Servers: []string{h.Addr}, Token: config.Secret(h.Token(t, 1, 0)), CAFingerprint: h.Srv.Boot.CAFingerprint, Facts: f, Now: h.Clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	deviceID := r.Identity.Device.DeviceID
	sp, err := spool.Open(filepath.Join(dir.Path(), "spool"), spool.Options{Now: h.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	med := media.New(media.Options{Emitter: daemon.NewEmitter(sp, h.Clock.Now), SysRoot: sys, DevRoot: t.TempDir(), MountInfo: mi,
		UdevRule: "../../installer/udev/60-mamori-media.rules", UdevOverrideDirs: []string{}, Now: h.Clock.Now, Sessions: sessionUsers{"tanaka"}})
	defer med.Close()

	cfg := daemon.DefaultConfig()
	cfg.State, cfg.Spool, cfg.Facts, cfg.Now, cfg.Servers = dir, sp, facts, h.Clock.Now, []string{h.Addr}
	cfg.Controls = []control.Control{med}
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
			return nil
		}
	}
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	authorized := func() string {
		b, err := os.ReadFile(filepath.Join(sys, phoneIface))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the phone blocked by mtp=block", func() bool { return authorized() == "0" })

	exc, err := admin.CreateException(ctx, &mamoriv1.CreateExceptionRequest{Usb: phoneUSB, User: "tanaka", Device: "pc-e2e",
		Reason: "庁内研修の写真取り込み", ExpiresAt: timestamppb.New(h.Clock.Now().Add(2 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("the phone authorised by the exception", func() bool { return authorized() == "1" })

	var used *mamoriv1.StoredEvent
	waitFor("media_exception_used stored on the server", func() bool {
		evs, err := admin.ListEvents(ctx, &mamoriv1.ListEventsRequest{DeviceId: deviceID})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Events {
			if e.Event.Kind == media.KindExceptionUsed {
				used = e
				return true
			}
		}
		return false
	})
	a := used.Event.Attributes
	if a["exception_id"] != exc.Exception.Id || a["serial"] != "98281FFAZ009SR" || a["user"] != "tanaka" || used.Event.Control != "media" {
		t.Errorf("use event attributes: %v", a)
	}
	dev, err := admin.GetDevice(ctx, &mamoriv1.GetDeviceRequest{IdOrHostname: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Device.PolicyVersion != p.Version+1 {
		t.Errorf("device policy version %d: an exception must not bump the version", dev.Device.PolicyVersion)
	}

	if _, err := admin.RevokeException(ctx, &mamoriv1.RevokeExceptionRequest{Id: exc.Exception.Id, Reason: "終了"}); err != nil {
		t.Fatal(err)
	}
	waitFor("the phone blocked again after revocation", func() bool { return authorized() == "0" })

	// A second exception, for every terminal of no particular user, runs
	// out by itself: the clock passes its expiry.
	if _, err := admin.CreateException(ctx, &mamoriv1.CreateExceptionRequest{Usb: phoneUSB, Device: deviceID,
		Reason: "short", ExpiresAt: timestamppb.New(h.Clock.Now().Add(10 * time.Minute))}); err != nil {
		t.Fatal(err)
	}
	waitFor("the phone authorised by the second exception", func() bool { return authorized() == "1" })
	h.Clock.Advance(11 * time.Minute)
	waitFor("the phone blocked after the expiry", func() bool { return authorized() == "0" })
}
