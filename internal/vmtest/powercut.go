//go:build linux

package vmtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PowerCuts cuts the power under a guest that writes durably: it boots
// guestPackage on an ext4 file system on a virtio disk that qemu opens with
// cache=directsync (every write the guest's kernel sends reaches the image
// before it completes, so what the guest fsync'd is really there and what
// sat in its page cache is really lost), kills qemu after a random number
// of confirmed writes, and boots again on the same image, cuts times
// (MAMORI_POWERCUTS=N overrides). The guest mounts /dev/vda on /mnt
// (ext4; the kernel command line carries mamori.boot=N) and says on the
// console, one line each:
//
//	HAVE id      held after this boot's recovery
//	READY n      recovery finished
//	REC id       the write of id returned: it must survive any cut
//	TRY id       an acknowledgement (deletion) of id is about to start
//	ACK id       that acknowledgement returned: id must never come back
//
// After each boot: every REC'd id is held unless a TRY of it was in flight,
// no ACK'd id is, none twice. ids matches a whole id as the guest makes
// them, so that a line cut short by the kill is not taken for one.
func PowerCuts(t *testing.T, guestPackage string, ids *regexp.Regexp, cuts int) {
	t.Helper()
	if v, err := strconv.Atoi(os.Getenv("MAMORI_POWERCUTS")); err == nil && v > 0 {
		cuts = v
	}
	vmlinuz, kroot, ver := Kernel(t)
	work := t.TempDir()
	initrd := Initramfs(t, work, kroot, ver, Guest{
		Package: guestPackage,
		Modules: []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"},
	})
	img := filepath.Join(work, "disk.img")
	f, err := os.Create(img)
	Must(t, err)
	Must(t, f.Truncate(512<<20)) // sparse; room for 20 boots of the SQLite store's writes (64 MiB filled at boot 15)
	Must(t, f.Close())
	Run(t, "mkfs.ext4", "-q", "-F", img)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	recorded := map[string]bool{} // REC seen and no ACK: must be there
	tried := map[string]bool{}    // an Ack was in flight at the cut: may be gone
	acked := map[string]bool{}    // ACK seen: must never come back
	var totalRec, totalAck int
	for boot := 0; boot <= cuts; boot++ {
		vm := Boot(t, work, vmlinuz, initrd, fmt.Sprintf("mamori.boot=%d", boot),
			"-drive", "file="+img+",if=virtio,format=raw,cache=directsync")
		var console []string
		diag := func() string {
			head := console[:min(len(console), 20)]
			return strings.Join(head, "\n") + "\n…\n" + strings.Join(Tail(console, 20), "\n")
		}
		have := map[string]bool{}
		deadline := time.After(5 * time.Minute)
	open:
		for {
			select {
			case line, ok := <-vm.Lines:
				if !ok {
					t.Fatalf("boot %d: the VM stopped before the spool opened:\n%s", boot, diag())
				}
				console = append(console, line)
				f := words(line)
				switch {
				case len(f) == 2 && f[0] == "HAVE":
					if have[f[1]] {
						t.Fatalf("boot %d: %s is held twice", boot, f[1])
					}
					have[f[1]] = true
				case len(f) == 2 && f[0] == "READY":
					break open
				case len(f) > 0 && (f[0] == "GUEST-ERROR" || f[0] == "MODPROBE-FAILED"):
					t.Fatalf("boot %d: %s\n%s", boot, line, diag())
				}
			case <-deadline:
				t.Fatalf("boot %d: the spool did not open within 5 minutes:\n%s", boot, diag())
			}
		}
		for id := range recorded {
			if !have[id] && !tried[id] {
				t.Errorf("boot %d: %s was recorded (its write returned) and is lost", boot, id)
			}
		}
		for id := range have {
			if acked[id] {
				t.Errorf("boot %d: %s came back after its Ack returned", boot, id)
			}
		}
		if t.Failed() {
			t.Fatalf("after cut %d:\n%s", boot, diag())
		}
		// What survived is what must survive the next cut.
		clear(recorded)
		clear(tried)
		for id := range have {
			if ids.MatchString(id) { // not the guest's own: e.g. the spool's spool_damaged events
				recorded[id] = true
			}
		}
		if boot == cuts {
			vm.Kill()
			break
		}
		// Let the guest work for a random number of appends, then cut.
		want := rng.IntN(300)
		recs := 0
		handle := func(line string) {
			f := words(line)
			if len(f) != 2 || !ids.MatchString(f[1]) {
				return // the last line may be cut short by the kill
			}
			switch f[0] {
			case "REC":
				recorded[f[1]] = true
				recs++
				totalRec++
			case "TRY":
				tried[f[1]] = true
			case "ACK":
				delete(recorded, f[1])
				acked[f[1]] = true
				totalAck++
			}
		}
		deadline = time.After(5 * time.Minute)
	work:
		for recs < want {
			select {
			case line, ok := <-vm.Lines:
				if !ok {
					t.Fatalf("boot %d: the VM stopped by itself:\n%s", boot, diag())
				}
				console = append(console, line)
				if strings.HasPrefix(line, "GUEST-ERROR") {
					t.Fatalf("boot %d: %s", boot, line)
				}
				handle(line)
			case <-deadline:
				break work
			}
		}
		vm.Kill()
		// Lines the guest printed before the cut that the test had not read
		// yet count too: their calls had returned.
		for line := range vm.Lines {
			handle(line)
		}
	}
	t.Logf("%d cuts: %d writes and %d acknowledgements confirmed before a cut, all accounted for", cuts, totalRec, totalAck)
}

// keyword finds the guest's first keyword on a console line: the firmware
// and the kernel may have printed before it on the same line (terminal
// escapes, messages without a newline).
var keyword = regexp.MustCompile(`(HAVE|READY|REC|TRY|ACK|GUEST-ERROR|MODPROBE-FAILED)(?: .*|$)`)

// words are the fields of a console line from the guest's first keyword on.
func words(line string) []string {
	m := keyword.FindString(line)
	return strings.Fields(m)
}
