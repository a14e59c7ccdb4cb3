// Command guest is the program the server store's power-cut test
// (server/store/powercut) boots inside a real Debian kernel. It mounts the
// virtio disk /dev/vda (ext4) on /mnt, opens the real SQLite store there
// (WAL, synchronous=FULL as mamori-server runs it), makes sure one device
// is enrolled, says which events are stored ("HAVE id", then "READY n"),
// and then commits reports of one to four events, saying "REC id" for each
// once IngestReports returned (what the server acknowledges to the agent),
// until the test cuts the power (internal/vmtest.PowerCuts). Test
// scaffolding, not a product binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/sqlite"
)

const deviceID = "dev-powercut"

func main() {
	if err := run(); err != nil {
		fmt.Println("GUEST-ERROR", err)
	}
	fmt.Println("GUEST-DONE")
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	boot := 0
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "mamori.boot="); ok {
				boot, _ = strconv.Atoi(v)
			}
		}
	}
	if err := unix.Mount("/dev/vda", "/mnt", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount /dev/vda: %w", err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, "/mnt/mamori.db")
	if err != nil {
		return err
	}
	defer st.Close()
	dev, err := st.GetDevice(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		dev, err = enrol(ctx, st)
	}
	if err != nil {
		return err
	}
	n := 0
	var before int64
	for {
		evs, err := st.ListEvents(ctx, store.EventFilter{DeviceID: deviceID, BeforeSeq: before, Limit: 1000})
		if err != nil {
			return err
		}
		for _, e := range evs {
			fmt.Println("HAVE", e.Event.GetId())
			n++
		}
		if len(evs) < 1000 {
			break
		}
		before = evs[len(evs)-1].Seq
	}
	fmt.Println("READY", n)

	for i := 0; ; i++ {
		now := time.Now()
		var evs []*mamoriv1.Event
		for j := range 1 + i%4 {
			// A UUID, as agents make them, that says boot, round and index.
			id := fmt.Sprintf("00000000-%04d-4000-8000-%010d%d0", boot, i, j)
			evs = append(evs, &mamoriv1.Event{Id: id, Time: timestamppb.New(now), Control: "media", Kind: "usb_blocked"})
		}
		res, err := st.IngestReports(ctx, []store.ReportInput{{DeviceID: dev.ID, CertSerial: dev.CertSerial, ReceivedAt: now,
			Events: evs, PolicyVersion: 1, Verdict: store.VerdictCompliant}})
		if err != nil {
			return err
		}
		if res[0].Err != nil {
			return res[0].Err
		}
		for _, ev := range evs {
			fmt.Println("REC", ev.GetId())
		}
	}
}

// enrol enrols the one device; a cut before its commit means doing it
// again at the next boot.
func enrol(ctx context.Context, st *sqlite.Store) (store.Device, error) {
	now := time.Now()
	err := st.CreateToken(ctx, store.Token{ID: "powercut", Hash: []byte("powercut"), CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), Uses: 1000})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return store.Device{}, err
	}
	res, err := st.Enroll(ctx, store.EnrollParams{
		TokenHash: []byte("powercut"), Now: now, NewDeviceID: deviceID,
		Facts: &mamoriv1.DeviceFacts{Hostname: "pc-powercut", MachineId: "powercut-machine"},
		Sign:  func(string) ([]byte, string, error) { return []byte("cert"), "1", nil },
	})
	return res.Device, err
}
