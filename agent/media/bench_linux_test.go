package media

import (
	"context"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkUeventToReadOnly measures, over b.N loop-device attach cycles,
// how long a freshly attached "stick" stays writable: from just before the
// LOOP_CONFIGURE ioctl (the kernel sends the uevent at its end) to the
// return of the control's BLKROSET. It also reports the control's own
// share, from reading the uevent off the netlink socket to BLKROSET done.
//
//	go test -run '^$' -bench UeventToReadOnly -benchtime 2000x ./agent/media
func BenchmarkUeventToReadOnly(b *testing.B) {
	m, _, st := realControl(b)
	done := make(chan [2]time.Time, 16)
	m.o.acted = func(d Device, received time.Time) {
		if d.DevType == "disk" && !received.IsZero() {
			done <- [2]time.Time{received, time.Now()}
		}
	}
	l := freeLoop(b)
	// Match by name here: the backing-file check of standIn costs a sysfs
	// read that the product does not do.
	m.o.override = func(d Device) Device {
		if d.Disk == l.Name {
			d.Class, d.Bus, d.Vendor, d.Product, d.Serial = ClassStorage, "usb", "0781", "5581", standInSerial
		} else {
			d.Class = ClassNone
		}
		return d
	}
	if err := m.Apply(context.Background(), enforce(nil)); err != nil {
		b.Fatal(err)
	}
	img := st.image(b, 1<<20)
	total := make([]time.Duration, 0, b.N)
	own := make([]time.Duration, 0, b.N)
	ioctl := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		l.clearRO(b)
		start := time.Now()
		if err := l.tryAttach(img, false); err != nil {
			b.Fatal(err)
		}
		ioctl = append(ioctl, time.Since(start))
	wait:
		for {
			select {
			case t := <-done:
				if t[0].Before(start) {
					continue // from the previous cycle's detach
				}
				total = append(total, t[1].Sub(start))
				own = append(own, t[1].Sub(t[0]))
				break wait
			case <-time.After(5 * time.Second):
				b.Fatal("no read-only within 5s")
			}
		}
		b.StopTimer()
		if v, err := unix.IoctlGetInt(l.fd, unix.BLKROGET); err != nil || v != 1 {
			b.Fatalf("BLKROGET %d %v", v, err)
		}
		l.detach()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(pct(total, 50), "p50-µs")
	b.ReportMetric(pct(total, 95), "p95-µs")
	b.ReportMetric(pct(total, 99), "p99-µs")
	b.ReportMetric(pct(total, 100), "max-µs")
	b.ReportMetric(pct(own, 50), "agent-p50-µs")
	b.ReportMetric(pct(own, 99), "agent-p99-µs")
	b.ReportMetric(pct(ioctl, 50), "attach-ioctl-p50-µs")
}

func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Nanoseconds()) / 1e3
}
