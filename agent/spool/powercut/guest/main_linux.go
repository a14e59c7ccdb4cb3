// Command guest is the program the spool's power-cut test
// (agent/spool/powercut) boots inside a real Debian kernel. It mounts the
// virtio disk /dev/vda (ext4) on /mnt, opens the real spool there, and
// says on the serial console what it finds and what it does, one line each:
//
//	HAVE id      an event held after this boot's Open
//	READY n      the Open finished, n events held
//	REC id       Append of id returned nil: it must survive any cut
//	TRY id       Ack of id is about to be called: after a cut it may be gone
//	ACK id       Ack of id returned nil: it must never come back
//
// then appends and acknowledges until the test cuts the power (kills
// qemu). The boot number (kernel command line mamori.boot=N) makes ids
// unique across boots. Test scaffolding, not a product binary.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mamori-dev/mamori/agent/spool"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("GUEST-ERROR", err)
	}
	fmt.Println("GUEST-DONE")
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	boot := "0"
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "mamori.boot="); ok {
				boot = v
			}
		}
	}
	// A journaled mount that recovers after the previous cut; the spool's
	// own fsyncs are what the test checks, so no sync mount options.
	if err := unix.Mount("/dev/vda", "/mnt", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount /dev/vda: %w", err)
	}
	sp, err := spool.Open("/mnt/spool", spool.Options{})
	if err != nil {
		return err
	}
	held, err := sp.Pending(0, 0)
	if err != nil {
		return err
	}
	for _, ev := range held {
		fmt.Println("HAVE", ev.GetId())
	}
	fmt.Println("READY", len(held))

	ctx := context.Background()
	for i := 0; ; i++ {
		// Batches of one to four events, as the controls emit them.
		var evs []*mamoriv1.Event
		for j := range 1 + i%4 {
			evs = append(evs, &mamoriv1.Event{Id: fmt.Sprintf("b%s-%d-%d", boot, i, j), Time: timestamppb.New(time.Now()),
				Control: "media", Kind: "usb_blocked", Attributes: map[string]string{"n": fmt.Sprint(i)}})
		}
		if err := sp.Append(ctx, evs...); err != nil {
			return err
		}
		for _, ev := range evs {
			fmt.Println("REC", ev.GetId())
		}
		// Every few rounds the server "acknowledges" the oldest events.
		if i%5 == 4 {
			old, err := sp.Pending(6, 0)
			if err != nil {
				return err
			}
			var ids []string
			for _, ev := range old {
				ids = append(ids, ev.GetId())
				fmt.Println("TRY", ev.GetId())
			}
			if err := sp.Ack(ids); err != nil {
				return err
			}
			for _, id := range ids {
				fmt.Println("ACK", id)
			}
		}
	}
}
