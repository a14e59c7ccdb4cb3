package media

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// recorder is an Emitter that keeps events in memory.
type recorder struct {
	mu     sync.Mutex
	events []recorded
	ch     chan recorded
}

type recorded struct {
	kind  string
	attrs map[string]string
}

func newRecorder() *recorder { return &recorder{ch: make(chan recorded, 1024)} }

func (r *recorder) Emit(ctx context.Context, control, kind string, attrs map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := recorded{kind, maps.Clone(attrs)}
	r.events = append(r.events, ev)
	select {
	case r.ch <- ev:
	default:
	}
	return nil
}

// devices returns the sorted device names of events of kind.
func (r *recorder) devices(kind string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.kind == kind {
			out = append(out, e.attrs["device"])
		}
	}
	slices.Sort(out)
	return out
}

// copyTree copies the captured sysfs tree (symlinks kept) so that writes
// to "authorized" land in a scratch copy.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", mixedTree+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

// fixture builds a control over a copy of the mixed sysfs tree, an empty
// /dev, no mounts, and the shipped udev rule.
func fixture(t *testing.T) (*Media, *recorder, string) {
	t.Helper()
	sys := copyTree(t)
	mi := filepath.Join(t.TempDir(), "mountinfo")
	must(t, os.WriteFile(mi, []byte("22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"), 0o644))
	rec := newRecorder()
	m := New(Options{Emitter: rec, SysRoot: sys, DevRoot: t.TempDir(), MountInfo: mi,
		UdevRule: "../../installer/udev/60-mamori-media.rules", UdevOverrideDirs: []string{}})
	t.Cleanup(func() { m.Close() })
	return m, rec, sys
}

func authorizedOf(t *testing.T, sys, iface string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sys, "bus/usb/devices", iface, "authorized"))
	must(t, err)
	return strings.TrimSpace(string(b))
}

func status(t *testing.T, m *Media) *mamoriv1.ControlStatus {
	t.Helper()
	st, err := m.Status(context.Background())
	must(t, err)
	return st
}

func TestMonitorBlocksNothing(t *testing.T) {
	m, rec, sys := fixture(t)
	must(t, m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}))
	want := []string{"1-5:1.0", "1-6:1.0", "mmcblk0", "mmcblk0p1", "sdb", "sdb1", "sdc", "sdd", "sde", "sr0", "sr1"}
	if diff := cmp.Diff(want, rec.devices(KindWouldBlock)); diff != "" {
		t.Errorf("would_block (-want +got)\n%s", diff)
	}
	for _, k := range []string{KindUSBBlocked, KindSetReadOnly, KindEnforcementError} {
		if got := rec.devices(k); len(got) > 0 {
			t.Errorf("monitor mode emitted %s for %v", k, got)
		}
	}
	for _, i := range []string{"1-5:1.0", "1-6:1.0", "1-2:1.0"} {
		if got := authorizedOf(t, sys, i); got != "1" {
			t.Errorf("%s authorized=%s in monitor mode", i, got)
		}
	}
	st := status(t, m)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_MONITORING || !strings.Contains(st.Detail, "11 would be restricted") {
		t.Errorf("status %v %q", st.State, st.Detail)
	}
	if st.DetailId != "detail.media.monitoring" || len(st.DetailArgs) != 2 || st.DetailArgs[1] != "11" {
		t.Errorf("detail id %q args %q", st.DetailId, st.DetailArgs)
	}
	// Applying the same policy again re-evaluates nothing.
	n := len(rec.devices(KindWouldBlock))
	must(t, m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_MONITOR}))
	if got := len(rec.devices(KindWouldBlock)); got != n {
		t.Errorf("same policy re-applied: %d would_block events, want %d", got, n)
	}
}

func TestEnforceBlocksMTPAndAllowsListed(t *testing.T) {
	m, rec, sys := fixture(t)
	p := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{
		"storage": "allow", "optical": "allow", "allow": "04a9:3218:*"}}
	must(t, m.Apply(context.Background(), p))
	if diff := cmp.Diff([]string{"1-5:1.0"}, rec.devices(KindUSBBlocked)); diff != "" {
		t.Errorf("usb_blocked (-want +got)\n%s", diff)
	}
	for iface, want := range map[string]string{"1-5:1.0": "0", "1-6:1.0": "1", "1-7:1.0": "1", "1-2:1.0": "1"} {
		if got := authorizedOf(t, sys, iface); got != want {
			t.Errorf("%s authorized=%s, want %s", iface, got, want)
		}
	}
	if st := status(t, m); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("status %v %q", st.State, st.Detail)
	}
	// Someone re-authorises the phone: the read-back notices and acts
	// again at once (reapplied), so the round ends as demanded.
	must(t, os.WriteFile(filepath.Join(sys, "bus/usb/devices/1-5:1.0/authorized"), []byte("1"), 0o644))
	if st := status(t, m); st.State != mamoriv1.ControlState_CONTROL_STATE_ENFORCED {
		t.Errorf("after re-authorisation: status %v %q, want ENFORCED after re-applying", st.State, st.Detail)
	}
	if got := authorizedOf(t, sys, "1-5:1.0"); got != "0" {
		t.Errorf("after re-applying: authorized=%s, want 0", got)
	}
	if diff := cmp.Diff([]string{"1-5:1.0"}, rec.devices(KindReapplied)); diff != "" {
		t.Errorf("reapplied (-want +got)\n%s", diff)
	}
	// Again within the back-off: reported, not acted on; a second round
	// in a row is still_writable (an incident on the server).
	must(t, os.WriteFile(filepath.Join(sys, "bus/usb/devices/1-5:1.0/authorized"), []byte("1"), 0o644))
	if st := status(t, m); st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(st.Detail, "1-5:1.0") {
		t.Errorf("within the back-off: status %v %q, want FAILED naming 1-5:1.0", st.State, st.Detail)
	}
	if n := len(rec.devices(KindReapplied)); n != 1 {
		t.Errorf("%d reapplied events within the back-off, want 1", n)
	}
	if n := len(rec.devices(KindStillWritable)); n != 0 {
		t.Errorf("still_writable after one bad round")
	}
	status(t, m)
	if diff := cmp.Diff([]string{"1-5:1.0"}, rec.devices(KindStillWritable)); diff != "" {
		t.Errorf("still_writable after two bad rounds (-want +got)\n%s", diff)
	}
}

func TestEnforceBlockStorage(t *testing.T) {
	m, rec, sys := fixture(t)
	p := &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{
		"storage": "block", "optical": "allow", "mtp": "allow"}}
	must(t, m.Apply(context.Background(), p))
	if diff := cmp.Diff([]string{"sdb", "sdb1", "sdc", "sdd", "sde"}, rec.devices(KindUSBBlocked)); diff != "" {
		t.Errorf("usb_blocked (-want +got)\n%s", diff)
	}
	for iface, want := range map[string]string{"1-2:1.0": "0", "3-1:1.0": "0", "2-1:1.0": "0", "1-4:1.0": "0", "1-3:1.0": "1", "1-5:1.0": "1"} {
		if got := authorizedOf(t, sys, iface); got != want {
			t.Errorf("%s authorized=%s, want %s", iface, got, want)
		}
	}
	// The SD card on the mmc bus cannot be deauthorised; the control falls
	// back to read-only, which fails here (no device node): FAILED, named.
	st := status(t, m)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED || !strings.Contains(st.Detail, "mmcblk0") {
		t.Errorf("status %v %q", st.State, st.Detail)
	}
}

func TestStatusDegradedWithoutUdevRule(t *testing.T) {
	m, _, _ := fixture(t)
	m.o.UdevRule = filepath.Join(t.TempDir(), "60-mamori-media.rules")
	must(t, m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{"storage": "allow", "optical": "allow"}}))
	st := status(t, m)
	if st.State != mamoriv1.ControlState_CONTROL_STATE_DEGRADED || !strings.Contains(st.Detail, "missing") || st.Evidence["udev_rule"] != "missing" {
		t.Errorf("status %v %q %v", st.State, st.Detail, st.Evidence)
	}
	if st.DetailId != "detail.media.udev-missing" || len(st.DetailArgs) != 1 || !strings.Contains(st.Detail, st.DetailArgs[0]) {
		t.Errorf("detail id %q args %q", st.DetailId, st.DetailArgs)
	}
}

func TestInvalidSettingsFailClosed(t *testing.T) {
	m, _, _ := fixture(t)
	err := m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE,
		Settings: map[string]string{"storage": "allow", "mtp": "sometimes"}})
	if err == nil || !strings.Contains(err.Error(), "mtp") {
		t.Fatalf("Apply error %v", err)
	}
	if m.settings.Storage != ActionReadOnly || m.settings.MTP != ActionBlock {
		t.Errorf("invalid settings did not fall back to the defaults: %+v", m.settings)
	}
}

func TestStatusBeforeApply(t *testing.T) {
	m, _, _ := fixture(t)
	if st := status(t, m); st.State != mamoriv1.ControlState_CONTROL_STATE_FAILED {
		t.Errorf("status %v", st.State)
	}
}

func runCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// A removable disk that holds the running system (a terminal booted from
// USB, an NVMe boot disk in a hot-plug slot) is never governed: making it
// read-only would take the system down. Status says so.
func TestSystemDiskNeverGoverned(t *testing.T) {
	m, rec, _ := fixture(t)
	// "/" on sdb1 (8:17), the USB stick of the fixture.
	must(t, os.WriteFile(m.o.MountInfo, []byte("22 1 8:17 / / rw,relatime - ext4 /dev/sdb1 rw\n"), 0o644))
	must(t, m.Apply(context.Background(), &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Settings: map[string]string{"storage": "block"}}))
	for _, k := range []string{KindUSBBlocked, KindSetReadOnly, KindEnforcementError} {
		for _, d := range rec.devices(k) {
			if d == "sdb" || d == "sdb1" {
				t.Errorf("%s on %s, the disk holding /", k, d)
			}
		}
	}
	if got := rec.devices(KindUSBBlocked); !slices.Contains(got, "sdc") {
		t.Errorf("the other sticks are still blocked: usb_blocked %v", got)
	}
	st := status(t, m)
	if st.Evidence["not_governed.sdb"] != "holds the system (/)" || st.Evidence["not_governed.sdb1"] == "" {
		t.Errorf("evidence %v", st.Evidence)
	}
}
