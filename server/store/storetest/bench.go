package storetest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// Benchmark shape: what one terminal sends every report interval.
const (
	BenchBatch    = 200  // reports per IngestReports call (one group commit)
	BenchDevices  = 1000 // devices the reports rotate over
	BenchControls = 10   // control statuses per report
	BenchEvents   = 5    // new events per report
)

// BenchIngest measures IngestReports with batches of BenchBatch reports of
// BenchControls statuses and BenchEvents new events each, and reports
// reports/s. Control states change in one report of 50, so history rows
// are written but rare, as in a real fleet.
func BenchIngest(b *testing.B, open func(b *testing.B) store.Store) {
	st := open(b)
	ctx := b.Context()
	devs := enrollBench(b, st, BenchDevices)
	var next, evSeq int
	batch := func(at time.Time) []store.ReportInput {
		in := make([]store.ReportInput, BenchBatch)
		for i := range in {
			d := devs[next%len(devs)]
			next++
			sts := make([]*mamoriv1.ControlStatus, BenchControls)
			for c := range sts {
				state := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
				if c == 0 && (next/len(devs))%2 == 1 && next%50 == 0 {
					state = mamoriv1.ControlState_CONTROL_STATE_DEGRADED
				}
				sts[c] = &mamoriv1.ControlStatus{
					Control: fmt.Sprint("control-", c), Mode: mamoriv1.Mode_MODE_ENFORCE, State: state,
					Detail: "enforced by udev rule 99-mamori", Evidence: map[string]string{"rule": "/etc/udev/rules.d/99-mamori.rules"},
					ObservedAt: timestamppb.New(at),
				}
			}
			evs := make([]*mamoriv1.Event, BenchEvents)
			for e := range evs {
				evSeq++
				evs[e] = &mamoriv1.Event{Id: fmt.Sprintf("00000000-0000-4000-8000-%012d", evSeq), Time: timestamppb.New(at),
					Control: "media", Kind: "usb_blocked", Attributes: map[string]string{"vendor": "0781", "product": "5567"}}
			}
			in[i] = store.ReportInput{DeviceID: d.ID, CertSerial: d.CertSerial, ReceivedAt: at, Statuses: sts,
				Events: evs, PolicyVersion: 1, Verdict: store.VerdictCompliant}
		}
		return in
	}
	at := t0
	b.ResetTimer()
	for range b.N {
		at = at.Add(time.Second)
		res, err := st.IngestReports(ctx, batch(at))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil || r.NewEvents != BenchEvents {
				b.Fatalf("report result %+v", r)
			}
		}
	}
	b.ReportMetric(float64(b.N*BenchBatch)/b.Elapsed().Seconds(), "reports/s")
}

// enrollBench enrols n devices, dev-000000 on, with one token.
func enrollBench(b *testing.B, st store.Store, n int) []store.Device {
	ctx := b.Context()
	must2(b, st.CreateToken(ctx, store.Token{ID: "bench", Hash: []byte("bench"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: n}))
	devs := make([]store.Device, n)
	for i := range devs {
		res, err := st.Enroll(ctx, store.EnrollParams{
			TokenHash: []byte("bench"), Now: t0, Facts: facts(fmt.Sprint("machine-", i), fmt.Sprint("pc-", i)),
			NewDeviceID: fmt.Sprintf("dev-%06d", i),
			Sign:        func(string) ([]byte, string, error) { return []byte("cert"), fmt.Sprint(i), nil },
		})
		must2(b, err)
		devs[i] = res.Device
	}
	return devs
}

func must2(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// FleetNow is the clock of the Fleet devices; FleetCutoff is the offline
// cut-off the fleet benchmarks use.
var (
	FleetNow    = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	FleetCutoff = FleetNow.Add(-time.Hour)
)

// Fleet returns n devices in a realistic mix for seeding the fleet
// benchmarks: 75% compliant, 10% non-compliant, 5% offline, 5% never
// reported, 5% revoked. Backends insert them in bulk (test-only code).
func Fleet(n int) []store.Device {
	ds := make([]store.Device, n)
	for i := range ds {
		d := store.Device{
			ID: fmt.Sprintf("dev-%07d", i), Facts: facts(fmt.Sprint("machine-", i), fmt.Sprint("pc-", i)),
			EnrolledAt: FleetNow.Add(-30 * 24 * time.Hour), CertSerial: fmt.Sprintf("%x", i),
			LastSeen: FleetNow.Add(-time.Duration(i%300) * time.Second), Verdict: store.VerdictCompliant, PolicyVersion: 1,
		}
		for c := range 3 {
			d.Controls = append(d.Controls, &mamoriv1.ControlRecord{
				Status: &mamoriv1.ControlStatus{Control: fmt.Sprint("control-", c), Mode: mamoriv1.Mode_MODE_ENFORCE,
					State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, Detail: "ok"},
				Since: timestamppb.New(d.EnrolledAt),
			})
		}
		switch i % 20 {
		case 0:
			d.LastSeen, d.Verdict, d.Controls = time.Time{}, store.VerdictNeverReported, nil
		case 1:
			d.Verdict, d.RevokedAt, d.RevokedReason = store.VerdictRevoked, FleetNow, "lost"
		case 2, 3:
			d.Verdict, d.FailingSince, d.Reasons = store.VerdictNoncompliant, d.LastSeen, []string{"media: not enforced"}
		case 4:
			d.LastSeen = FleetNow.Add(-48 * time.Hour)
		}
		ds[i] = d
	}
	return ds
}

// BenchCountFleet measures CountFleet on a store seeded with Fleet.
func BenchCountFleet(b *testing.B, st store.Store, n int) {
	var c store.FleetCounts
	for b.Loop() {
		var err error
		if c, err = st.CountFleet(b.Context(), store.OfflineCut{Default: FleetCutoff}); err != nil {
			b.Fatal(err)
		}
	}
	if c.Total != int64(n) || c.Noncompliant != int64(n/10) {
		b.Fatalf("counts %+v do not match the seeded fleet of %d", c, n)
	}
}

// BenchListNoncompliant measures one page (100) of ListDevices(NONCOMPLIANT)
// on a store seeded with Fleet, at cursors spread over the fleet.
func BenchListNoncompliant(b *testing.B, st store.Store, n int) {
	cursors := []string{"", fmt.Sprintf("dev-%07d", n/3), fmt.Sprintf("dev-%07d", n*2/3)}
	i := 0
	for b.Loop() {
		ds, err := st.ListDevices(b.Context(), store.DeviceFilter{
			Compliance: mamoriv1.Compliance_COMPLIANCE_NONCOMPLIANT, OfflineBefore: FleetCutoff,
			AfterID: cursors[i%len(cursors)], Limit: 100,
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) != 100 {
			b.Fatalf("page of %d devices", len(ds))
		}
		i++
	}
}

// BenchTouchDevices measures the batched last_seen write of no-change
// reports (TouchDevices, issue #20) as a fleet makes it: TouchFleet
// devices enrolled, each with one full report of BenchControls statuses
// (the row a differential report leaves), then per operation one flush of
// TouchPerFlush distinct devices in random order, each moved a second
// forward. It reports µs per touched row: in a fleet every no-change
// report is one such row. Every touch must apply.
func BenchTouchDevices(b *testing.B, st store.Store) {
	ctx := b.Context()
	devs := enrollBench(b, st, TouchFleet)
	digest := func(i int) string { return fmt.Sprintf("%064x", i) }
	for chunk := 0; chunk < len(devs); chunk += BenchBatch {
		var in []store.ReportInput
		for i := chunk; i < min(chunk+BenchBatch, len(devs)); i++ {
			sts := make([]*mamoriv1.ControlStatus, BenchControls)
			for c := range sts {
				sts[c] = &mamoriv1.ControlStatus{
					Control: fmt.Sprint("control-", c), Mode: mamoriv1.Mode_MODE_ENFORCE, State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED,
					Detail: "enforced by udev rule 99-mamori", Evidence: map[string]string{"rule": "/etc/udev/rules.d/99-mamori.rules"},
					ObservedAt: timestamppb.New(t0),
				}
			}
			in = append(in, store.ReportInput{DeviceID: devs[i].ID, CertSerial: devs[i].CertSerial, ReceivedAt: t0, Statuses: sts,
				PolicyVersion: 1, Verdict: store.VerdictCompliant, StateDigest: digest(i), PolicyDigest: "p1"})
		}
		res, err := st.IngestReports(ctx, in)
		must2(b, err)
		for _, r := range res {
			if r.Err != nil {
				b.Fatalf("full report: %v", r.Err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	at := t0
	touches := make([]store.Touch, TouchPerFlush)
	for b.Loop() { // b.Loop starts the timer after the set-up above
		at = at.Add(time.Second)
		for k, i := range rng.Perm(len(devs))[:TouchPerFlush] {
			touches[k] = store.Touch{DeviceID: devs[i].ID, CertSerial: devs[i].CertSerial, StateDigest: digest(i), At: at}
		}
		stale, err := st.TouchDevices(ctx, touches)
		if err != nil || len(stale) != 0 {
			b.Fatalf("touch: %v, %d stale", err, len(stale))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*TouchPerFlush), "µs/row")
}

// The fleet of BenchTouchDevices: 10,000 terminals, 7,000 of them in one
// second's flush (the load tool's steady state at ~7,000 reports/s).
const (
	TouchFleet    = 10000
	TouchPerFlush = 7000
)
