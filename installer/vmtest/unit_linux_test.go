// Package unitvm runs the agent as systemd starts it from the shipped
// unit, in a qemu guest whose PID 1 is systemd (TestAgentUnderRealUnit).
// It runs when MAMORI_VM_TEST=1 or CI=true, as root, and is left out of
// the race pass like the other VM tests (make test).
package unitvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/agent/pam/pamtest"
	"github.com/mamori-dev/mamori/internal/testenv"
	"github.com/mamori-dev/mamori/internal/vmtest"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/servertest"
	"github.com/mamori-dev/mamori/server/store"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestAgentUnderRealUnit (issue #21, the unit's sandbox): the real agent
// runs as systemd starts it from the shipped unit file, unchanged, with
// every sandbox setting in force, and its three enforcing controls still
// do their work. The VM (Debian's kernel under qemu) boots systemd as PID
// 1 over this machine's own /usr (9p, read-only, under a tmpfs overlay)
// and a copy of its /etc; the agent binary, the unit, pam_mamori.so and
// its pam-auth-update profile are put where the package puts them, and
// /etc/default/mamori-agent carries the server, the enrolment token and
// the CA fingerprint. The server is this test's, on the host's loopback:
// the guest reaches it at 10.0.2.100:8443 through qemu's user network,
// which forwards that one address and nothing else. A USB stick is
// plugged in before boot.
//
// Checked from outside the agent (installer/vmtest/guest) once the server
// says media, isolation and login-mfa are ENFORCED: the process has no new
// privileges, a seccomp filter and the unit's capability bounding set,
// and /home is hidden from it; the stick refuses a raw write and a
// read-write mount; mamori's nftables table is in the kernel; pam_mamori.so
// (pamtester) gets a yes from the agent for the oathtool code and a no for
// a wrong one, and the agent switched the module on in common-auth with
// pam-auth-update from inside its sandbox.
func TestAgentUnderRealUnit(t *testing.T) {
	vmtest.Require(t)
	testenv.LookPath(t, "oathtool", "oathtool")
	testenv.LookPath(t, "pamtester", "pamtester")
	testenv.LookPath(t, "gcc", "gcc")
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		testenv.Unavailable(t, "systemd missing (Debian: systemd): the guest boots this machine's systemd")
	}
	if _, err := exec.LookPath("pam-auth-update"); err != nil {
		testenv.Unavailable(t, "pam-auth-update missing (Debian: libpam-runtime)")
	}
	vmlinuz, kroot, ver := vmtest.Kernel(t)
	work := t.TempDir()
	share := filepath.Join(work, "share")
	vmtest.Must(t, os.MkdirAll(share, 0o755))
	build := func(out, pkg string) {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	build(filepath.Join(share, "mamori-agent"), "../../agent/cmd/mamori-agent")
	fwd := filepath.Join(work, "fwd")
	build(fwd, "../../internal/vmtest/fwd")
	so := filepath.Join(share, "pam_mamori.so")
	if err := pamtest.Build(so); err != nil {
		t.Fatal(err)
	}
	soBytes, err := os.ReadFile(so)
	vmtest.Must(t, err)
	soSum := sha256.Sum256(soBytes)
	for _, f := range []string{"mamori-agent.service", "pam-configs-mamori"} {
		vmtest.CopyFile(t, filepath.Join("../../installer/packaging/linux", f), filepath.Join(share, f), 0o644)
	}

	// The server, its certificate valid for the guest's address of it.
	h := servertest.Start(t, servertest.Options{Listen: freeAddr(t), Hosts: []string{"10.0.2.100"}})
	admin := h.Admin(t, h.AdminToken)
	en, err := admin.EnrollMFAUser(ctx, &mamoriv1.EnrollMFAUserRequest{User: "tanaka"})
	vmtest.Must(t, err)
	u, _ := url.Parse(en.OtpauthUri)
	vmtest.Must(t, os.WriteFile(filepath.Join(share, "secret"), []byte(u.Query().Get("secret")), 0o600))
	cur, err := admin.GetPolicy(ctx, &mamoriv1.GetPolicyRequest{})
	vmtest.Must(t, err)
	p := cur.Policy
	enforce := func(settings map[string]string) *mamoriv1.ControlPolicy {
		return &mamoriv1.ControlPolicy{Mode: mamoriv1.Mode_MODE_ENFORCE, Required: true, Settings: settings}
	}
	p.Controls["media"] = enforce(nil)
	p.Controls["isolation"] = enforce(map[string]string{"allowed_networks": "10.0.2.0/24", "canaries": "192.0.2.1:443"})
	p.Controls["login-mfa"] = enforce(map[string]string{"users": "*", "services": "login", "module_sha256": hex.EncodeToString(soSum[:])})
	p.ReportInterval = durationpb.New(5 * time.Second) // the minimum: rounds come fast under emulation
	if _, err := admin.SetPolicy(ctx, &mamoriv1.SetPolicyRequest{Policy: p, ExpectedVersion: p.Version, Reason: "e2e: the agent under its unit"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateEnrollmentToken(ctx, &mamoriv1.CreateEnrollmentTokenRequest{Uses: 1})
	vmtest.Must(t, err)
	def := fmt.Sprintf("MAMORI_SERVER=10.0.2.100:8443\nMAMORI_TOKEN=%s\nMAMORI_CA_FINGERPRINT=%s\n", tok.Token, tok.CaFingerprint)
	vmtest.Must(t, os.WriteFile(filepath.Join(share, "default"), []byte(def), 0o600))

	stick := filepath.Join(work, "stick.img")
	f, err := os.Create(stick)
	vmtest.Must(t, err)
	f.Truncate(32 << 20)
	f.Close()
	vmtest.Run(t, "mkfs.ext4", "-q", "-F", stick)
	before, err := os.ReadFile(stick)
	vmtest.Must(t, err)

	initrd := vmtest.Initramfs(t, work, kroot, ver, vmtest.Guest{
		Package: "github.com/mamori-dev/mamori/installer/vmtest/guest",
		Modules: []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net",
			"xhci_pci", "usb_storage", "sd_mod", "crc32c_generic", "ext4",
			// The kernel cannot load modules on demand here (its modprobe is
			// this machine's, without the guest kernel's modules): what the
			// isolation control asks for is loaded up front.
			"nf_tables", "nft_ct", "nft_reject_inet", "nf_conntrack_netlink"},
		Init: unitGuestInit,
	})
	vm := vmtest.Boot(t, work, vmlinuz, initrd, "systemd.unit=mamori-vm.target systemd.show_status=0",
		"-m", "768",
		"-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on",
		"-virtfs", "local,path="+share+",mount_tag=share,security_model=none",
		"-netdev", "user,id=n0,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:8443-cmd:"+fwd+" "+h.Addr,
		"-device", "virtio-net-pci,netdev=n0",
		"-device", "qemu-xhci,id=xhci",
		"-drive", "if=none,id=stick,format=raw,file="+stick,
		"-device", "usb-storage,bus=xhci.0,drive=stick,removable=on,serial=UNITVM0001")

	var console []string
	// MAMORI_VM_CONSOLE=FILE keeps the console as it comes, for a run
	// that ends in a time-out.
	var keep *os.File
	if p := os.Getenv("MAMORI_VM_CONSOLE"); p != "" {
		keep, err = os.Create(p)
		vmtest.Must(t, err)
		defer keep.Close()
	}
	line := func(l string) {
		console = append(console, l)
		if keep != nil {
			fmt.Fprintln(keep, l)
		}
	}
	diag := func() string {
		return "console:\n" + strings.Join(vmtest.Tail(console, 120), "\n")
	}
	// The console until the server says the three controls are enforced.
	deadline := time.After(12 * time.Minute)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var devID string
	var states map[string]string
wait:
	for {
		select {
		case l, ok := <-vm.Lines:
			if !ok {
				t.Fatalf("the VM stopped before the controls were enforced\n%s", diag())
			}
			line(l)
		case <-tick.C:
			ds, err := h.Srv.Store().ListDevices(ctx, store.DeviceFilter{Limit: 1})
			vmtest.Must(t, err)
			if len(ds) == 0 {
				continue
			}
			devID = ds[0].ID
			states = controlStates(t, h, devID)
			if states["media"] == "ENFORCED" && states["isolation"] == "ENFORCED" && states["login-mfa"] == "ENFORCED" {
				break wait
			}
		case <-deadline:
			t.Fatalf("controls not all enforced after 12 min: %v\n%s", states, diag())
		}
	}
	t.Logf("device %s enforced %v", devID, states)
	vmtest.Must(t, os.WriteFile(filepath.Join(share, "go"), nil, 0o644))
	results := map[string]map[string]string{}
	timeout := time.After(5 * time.Minute)
read:
	for {
		select {
		case l, ok := <-vm.Lines:
			if !ok {
				break read
			}
			line(l)
			fs := strings.Fields(l)
			if i := indexOf(fs, "RESULT"); i >= 0 && len(fs) > i+1 {
				kv := map[string]string{}
				for _, p := range fs[i+2:] {
					k, v, _ := strings.Cut(p, "=")
					kv[k] = v
				}
				results[fs[i+1]] = kv
			}
			if strings.Contains(l, "GUEST-DONE") {
				break read
			}
		case <-timeout:
			t.Fatalf("no GUEST-DONE 5 min after go\n%s", diag())
		}
	}
	want := map[string]map[string]string{
		"unit":      {"nnp": "1", "seccomp": "2", "home": "hidden"},
		"media":     {"blkro": "1", "raw-write": "EPERM"},
		"isolation": {"table": "present"},
		"mfa":       {"right": "ok", "wrong": "refused", "common-auth": "present"},
	}
	for what, kv := range want {
		for k, v := range kv {
			if got := results[what][k]; got != v {
				t.Errorf("%s %s = %q, want %q (all: %v)", what, k, got, v, results[what])
			}
		}
	}
	// A read-write mount of a read-only block device: EACCES from the
	// block layer (Linux 6.1), EROFS from some filesystems.
	if got := results["media"]["mount-rw"]; got != "EACCES" && got != "EROFS" {
		t.Errorf("media mount-rw = %q, want EACCES or EROFS", got)
	}
	// The unit's bounding set: CAP_CHOWN 0, DAC_OVERRIDE 1, FOWNER 3,
	// NET_ADMIN 12, SYS_ADMIN 21, SYS_PTRACE 19.
	if got := results["unit"]["capbnd"]; got != fmt.Sprintf("%016x", 1<<0|1<<1|1<<3|1<<12|1<<19|1<<21) {
		t.Errorf("agent's CapBnd = %s", got)
	}
	after, err := os.ReadFile(stick)
	vmtest.Must(t, err)
	if string(before) != string(after) {
		t.Error("the stick's image changed")
	}
	if t.Failed() {
		t.Log(diag())
	}
}

var ctx = context.Background()

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	vmtest.Must(t, err)
	defer l.Close()
	return l.Addr().String()
}

func indexOf(fs []string, s string) int {
	for i, f := range fs {
		if f == s {
			return i
		}
	}
	return -1
}

// controlStates reads the device's control states from the server.
func controlStates(t *testing.T, h *servertest.Harness, id string) map[string]string {
	t.Helper()
	d, err := h.Srv.Store().GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range d.Controls {
		s := c.GetStatus()
		out[s.GetControl()] = strings.TrimPrefix(s.GetState().String(), "CONTROL_STATE_")
	}
	return out
}

// unitGuestInit is the initramfs's second half: a root of tmpfs with this
// machine's /usr under an overlay and a copy of its /etc, the package's
// files where the package puts them, a test user and PAM service, the
// network to the server, and systemd as PID 1 with the target that starts
// the agent's unit and the checker.
const unitGuestInit = `
mkdir -p /host /share /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host || { echo GUEST-FAILED 9p host; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share || { echo GUEST-FAILED 9p share; poweroff -f; }
mount -t tmpfs -o mode=0755 root /newroot
cd /newroot
mkdir -p usr etc var/lib var/log var/tmp var/cache run tmp proc sys dev root home/tanaka share mnt .ovl/upper .ovl/work
chmod 1777 tmp var/tmp
mkdir -p var/lib/mamori; chmod 0700 var/lib/mamori
ln -s usr/bin bin; ln -s usr/lib lib; ln -s usr/lib64 lib64; ln -s usr/sbin sbin
mount -t overlay -o lowerdir=/host/usr,upperdir=/newroot/.ovl/upper,workdir=/newroot/.ovl/work overlay /newroot/usr || { echo GUEST-FAILED overlay; poweroff -f; }
cp -a /host/etc/. etc/
for d in var/lib/pam var/cache/debconf var/lib/ucf; do [ -d /host/$d ] && cp -a /host/$d var/$(dirname ${d#var/}) ; done
: > etc/fstab
rm -f etc/systemd/system/*.wants/* 2>/dev/null
echo tanaka:x:4301:4301::/home/tanaka:/bin/sh >> etc/passwd
echo tanaka:x:4301: >> etc/group
echo 'tanaka:!:20000:0:99999:7:::' >> etc/shadow
printf 'auth required pam_mamori.so\naccount required pam_permit.so\n' > etc/pam.d/mamori-unit
cp /share/mamori-agent usr/sbin/mamori-agent
mkdir -p usr/lib/systemd/system usr/lib/x86_64-linux-gnu/security usr/share/pam-configs
cp /share/mamori-agent.service usr/lib/systemd/system/mamori-agent.service
cp /share/pam_mamori.so usr/lib/x86_64-linux-gnu/security/pam_mamori.so
cp /share/pam-configs-mamori usr/share/pam-configs/mamori
cp /share/default etc/default/mamori-agent
chmod 600 etc/default/mamori-agent
mkdir -p usr/local/bin; cp /guest usr/local/bin/unitguest
printf '[Unit]\nDescription=mamori agent under its unit (e2e)\nWants=mamori-agent.service mamori-check.service\n' > etc/systemd/system/mamori-vm.target
printf '[Unit]\nDescription=mamori e2e checker\nAfter=mamori-agent.service\n[Service]\nType=simple\nExecStart=/usr/local/bin/unitguest\n' > etc/systemd/system/mamori-check.service
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mount --move /share /newroot/share
umount /proc /sys
mount --move /dev /newroot/dev
echo GUEST-SWITCH
exec switch_root /newroot /lib/systemd/systemd
`
