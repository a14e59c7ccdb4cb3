package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

func digest(c byte) string { return strings.Repeat(string(c), 64) }

// testDifferential: a full report stores its state digest; a delta whose
// base is that digest applies and moves it; a delta against another base
// (a server restored from an older backup, or one that never had state)
// applies nothing of its statuses, keeps its events and facts, and says
// NeedFull; a report from an agent without digests clears it.
func testDifferential(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	d := f.enroll("m-1", "pc-01", t0).Device
	enf, failed := mamoriv1.ControlState_CONTROL_STATE_ENFORCED, mamoriv1.ControlState_CONTROL_STATE_FAILED

	// Never reported: a delta has no base to apply to.
	in := report(d, t0.Add(time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", enf, "ok")}, event("e0"))
	in.BaseDigest, in.StateDigest = digest('a'), digest('b')
	r := f.ingestOK(in)
	if !r[0].NeedFull || r[0].NewEvents != 1 {
		t.Fatalf("delta without prior state: %+v; want NeedFull and its event stored", r[0])
	}
	got := f.device(d.ID)
	if len(got.Controls) != 0 || got.StateDigest != "" || got.Verdict != store.VerdictNeverReported || !got.LastSeen.Equal(us(t0.Add(time.Minute))) {
		t.Fatalf("after a refused delta: controls %d digest %q verdict %s last seen %v", len(got.Controls), got.StateDigest, got.Verdict, got.LastSeen)
	}

	// Full report: state and digest stored.
	full := report(d, t0.Add(2*time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", enf, "ok"), status("isolation", enf, "ok")})
	full.StateDigest, full.PolicyDigest = digest('1'), digest('p')
	if r := f.ingestOK(full); r[0].NeedFull {
		t.Fatal("full report answered NeedFull")
	}
	got = f.device(d.ID)
	if got.StateDigest != digest('1') || got.VerdictPolicy != digest('p') || len(got.Controls) != 2 {
		t.Fatalf("after full report: digest %q verdict policy %q controls %d", got.StateDigest, got.VerdictPolicy, len(got.Controls))
	}

	// Delta on that base: one control changes; the other is kept.
	delta := report(d, t0.Add(3*time.Minute), store.VerdictNoncompliant,
		[]*mamoriv1.ControlStatus{status("media", failed, "udev rule missing")}, event("e1"))
	delta.BaseDigest, delta.StateDigest, delta.PolicyDigest = digest('1'), digest('2'), digest('p')
	if r := f.ingestOK(delta); r[0].NeedFull || len(r[0].Changes) != 1 || r[0].NewEvents != 1 {
		t.Fatalf("delta on the stored base: %+v", r[0])
	}
	got = f.device(d.ID)
	if c := f.controls(d.ID); !strings.HasPrefix(c["media"], failed.String()+" ") || !strings.HasPrefix(c["isolation"], enf.String()+" ") {
		t.Errorf("controls after delta: %v", c)
	}
	if got.StateDigest != digest('2') || got.Verdict != store.VerdictNoncompliant {
		t.Errorf("after delta: digest %q verdict %s", got.StateDigest, got.Verdict)
	}

	// Restored from an older backup: the stored digest is an older one.
	stale := report(d, t0.Add(4*time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", enf, "ok")}, event("e2"))
	stale.BaseDigest, stale.StateDigest = digest('1'), digest('3')
	stale.Facts = facts("m-1", "pc-01-renamed")
	if r := f.ingestOK(stale); !r[0].NeedFull || r[0].NewEvents != 1 || len(r[0].Changes) != 0 {
		t.Fatalf("delta on a base not stored: %+v", r[0])
	}
	after := f.device(d.ID)
	if after.StateDigest != digest('2') || !strings.HasPrefix(f.controls(d.ID)["media"], failed.String()+" ") || after.Verdict != store.VerdictNoncompliant {
		t.Errorf("a refused delta changed the state: digest %q controls %v verdict %s", after.StateDigest, f.controls(d.ID), after.Verdict)
	}
	if after.Facts.GetHostname() != "pc-01-renamed" || !after.LastSeen.Equal(us(t0.Add(4*time.Minute))) {
		t.Errorf("a refused delta lost its facts or last_seen: %q %v", after.Facts.GetHostname(), after.LastSeen)
	}
	if n := f.events(d.ID); n != 3 {
		t.Errorf("events = %d, want 3 (none lost to NeedFull)", n)
	}
	h, err := st.ControlHistory(t.Context(), d.ID, 0)
	must(t, err)
	if len(h) != 3 { // media, isolation appear; media fails
		t.Errorf("history has %d entries, want 3", len(h))
	}

	// An agent without digests (an older version) clears it.
	old := report(d, t0.Add(5*time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("media", enf, "ok"), status("isolation", enf, "ok")})
	f.ingestOK(old)
	if got := f.device(d.ID); got.StateDigest != "" || got.Verdict != store.VerdictCompliant {
		t.Errorf("after an old agent's report: digest %q verdict %s", got.StateDigest, got.Verdict)
	}
}

// testTouchDevices: the batched last_seen of no-change reports applies
// only while the device holds the touch's certificate and state and is
// not revoked, never moves last_seen back, and names the others stale.
func testTouchDevices(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	enf := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	var devs []store.Device
	for i, m := range []string{"m-1", "m-2", "m-3", "m-4"} {
		d := f.enroll(m, "pc-"+m, t0).Device
		in := report(d, t0.Add(time.Minute), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", enf, "ok")})
		if i != 3 {
			in.StateDigest = digest('1')
		}
		f.ingestOK(in)
		devs = append(devs, d)
	}
	_, err := st.RevokeDevice(ctx, devs[2].ID, "stolen", t0.Add(2*time.Minute))
	must(t, err)
	at := t0.Add(10 * time.Minute)
	stale, err := st.TouchDevices(ctx, []store.Touch{
		{DeviceID: devs[0].ID, CertSerial: devs[0].CertSerial, StateDigest: digest('1'), At: at}, // applies
		{DeviceID: devs[1].ID, CertSerial: devs[1].CertSerial, StateDigest: digest('9'), At: at}, // other state
		{DeviceID: devs[2].ID, CertSerial: devs[2].CertSerial, StateDigest: digest('1'), At: at}, // revoked
		{DeviceID: devs[3].ID, CertSerial: devs[3].CertSerial, StateDigest: "", At: at},          // no digest stored
		{DeviceID: "no-such-device", CertSerial: "1", StateDigest: digest('1'), At: at},
	})
	must(t, err)
	diff(t, "stale touches", []string{devs[1].ID, devs[2].ID, devs[3].ID, "no-such-device"}, stale)
	if got := f.device(devs[0].ID).LastSeen; !got.Equal(us(at)) {
		t.Errorf("touched device last seen %v, want %v", got, us(at))
	}
	if got := f.device(devs[1].ID).LastSeen; !got.Equal(us(t0.Add(time.Minute))) {
		t.Errorf("stale touch moved last seen to %v", got)
	}
	// An older touch (a flush that lost the race to a full report) does
	// not move last_seen back.
	stale, err = st.TouchDevices(ctx, []store.Touch{{DeviceID: devs[0].ID, CertSerial: devs[0].CertSerial, StateDigest: digest('1'), At: t0.Add(5 * time.Minute)}})
	must(t, err)
	if len(stale) != 0 {
		t.Errorf("older touch named stale: %v", stale)
	}
	if got := f.device(devs[0].ID).LastSeen; !got.Equal(us(at)) {
		t.Errorf("older touch moved last seen back to %v", got)
	}
	// Many at once (more than one statement's worth).
	var many []store.Touch
	for range 1200 {
		many = append(many, store.Touch{DeviceID: devs[0].ID, CertSerial: devs[0].CertSerial, StateDigest: digest('1'), At: at.Add(time.Minute)})
	}
	_, err = st.TouchDevices(ctx, many)
	must(t, err)
	if got := f.device(devs[0].ID).LastSeen; !got.Equal(us(at.Add(time.Minute))) {
		t.Errorf("last seen after many touches %v", got)
	}
}

// testTouchDevicesBesideIngest: the last_seen batch and report batches
// over the same devices, at once and many times, never deadlock (on
// PostgreSQL both lock device rows; in different orders they did: 40P01
// failed whole report batches in BenchmarkSteadyStatePostgres).
func testTouchDevicesBesideIngest(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	enf := mamoriv1.ControlState_CONTROL_STATE_ENFORCED
	var devs []store.Device
	for i := range 40 {
		m := fmt.Sprintf("m-lock-%02d", i)
		d := f.enroll(m, "pc-"+m, t0).Device
		in := report(d, t0.Add(time.Minute), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", enf, "ok")})
		in.StateDigest = digest('1')
		f.ingestOK(in)
		devs = append(devs, d)
	}
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { // touches, newest device first
		for round := range 30 {
			var ts []store.Touch
			for i := len(devs) - 1; i >= 0; i-- {
				ts = append(ts, store.Touch{DeviceID: devs[i].ID, CertSerial: devs[i].CertSerial, StateDigest: digest('1'),
					At: t0.Add(time.Hour + time.Duration(round)*time.Second)})
			}
			if _, err := st.TouchDevices(ctx, ts); err != nil {
				errs <- fmt.Errorf("touch: %w", err)
				return
			}
		}
	})
	for w := range 2 {
		wg.Go(func() { // report batches over every device
			for round := range 15 {
				var in []store.ReportInput
				for i := range devs {
					d := devs[(i*7+w)%len(devs)]
					r := report(d, t0.Add(2*time.Minute+time.Duration(round)*time.Second), store.VerdictCompliant,
						[]*mamoriv1.ControlStatus{status("media", enf, "ok")})
					r.StateDigest = digest('1')
					in = append(in, r)
				}
				if err := ingestAll(ctx, st, in); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testWatchBesideIngest: the incident watcher's step and report batches
// (and the last_seen batch) over the same devices, at once and many
// times, never deadlock. On PostgreSQL the watcher's writes of
// control_states rows take a key-share lock on their devices rows (the
// foreign key), in the order of the control history it sweeps; report
// batches and touches lock the rows they update in id order. When those
// took FOR UPDATE, which conflicts with key-share, a history in another
// order deadlocked (40P01: whole report batches failed, seen through
// mamori-loadgen at 10,000 terminals).
func testWatchBesideIngest(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	var devs []store.Device
	for i := range 40 {
		m := fmt.Sprintf("m-watch-%02d", i)
		devs = append(devs, f.enroll(m, "pc-"+m, t0).Device)
	}
	// History newest device id first, one report at a time: the watcher
	// sweeps it in that order.
	slices.SortFunc(devs, func(a, b store.Device) int { return strings.Compare(b.ID, a.ID) })
	states := []mamoriv1.ControlState{mamoriv1.ControlState_CONTROL_STATE_ENFORCED, mamoriv1.ControlState_CONTROL_STATE_DEGRADED}
	at := func(round, i int) time.Time {
		return t0.Add(time.Duration(round)*time.Minute + time.Duration(i)*time.Millisecond)
	}
	for round := range 5 {
		for i, d := range devs {
			in := report(d, at(round, i), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", states[round%2], "x")})
			in.StateDigest = digest('1' + byte(round%2))
			f.ingestOK(in)
		}
	}
	judge := func(store.WatchBatch) ([]store.SearchTerm, []store.Signal, error) { return nil, nil, nil }
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { // the watcher, until it has swept everything twice over
		for step := range 60 {
			if _, err := st.Watch(ctx, store.WatchParams{Now: at(100, step), Limit: 50, Margin: time.Minute}, judge); err != nil {
				errs <- fmt.Errorf("watch: %w", err)
				return
			}
		}
	})
	wg.Go(func() { // touches of every device
		for round := range 20 {
			var ts []store.Touch
			for _, d := range devs {
				ts = append(ts, store.Touch{DeviceID: d.ID, CertSerial: d.CertSerial, StateDigest: digest('1'), At: at(200, round)})
			}
			if _, err := st.TouchDevices(ctx, ts); err != nil {
				errs <- fmt.Errorf("touch: %w", err)
				return
			}
		}
	})
	for w := range 2 {
		wg.Go(func() { // report batches over every device, changing state: more history to sweep
			for round := range 10 {
				var in []store.ReportInput
				for i, d := range devs {
					r := report(d, at(10+round, i+w*100), store.VerdictCompliant, []*mamoriv1.ControlStatus{status("media", states[(round+w)%2], "y")})
					r.StateDigest = digest('1')
					in = append(in, r)
				}
				if err := ingestAll(ctx, st, in); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// ingestAll ingests one batch and returns its error or the first of its
// reports'.
func ingestAll(ctx context.Context, st store.Store, in []store.ReportInput) error {
	res, err := st.IngestReports(ctx, in)
	if err == nil {
		for _, r := range res {
			err = cmp.Or(err, r.Err)
		}
	}
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}
