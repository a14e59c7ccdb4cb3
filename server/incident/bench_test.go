package incident_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
)

// BenchmarkWatchSQLite: how many stored events a watcher step digests per
// second on SQLite — the mix of a busy fleet: a third blocked writes (rule
// with threshold, USB serial term), a third MFA events (user term), a third
// other events — over 200 terminals, in steps of the default batch size.
//
//	go test -run '^$' -bench Watch -benchtime 3x ./server/incident/
func BenchmarkWatchSQLite(b *testing.B) {
	const devices, perReport, reports = 200, 50, 10 // 100,000 events a round
	for b.Loop() {
		b.StopTimer()
		f := newFleet(b)
		var ds []store.Device
		for i := range devices {
			ds = append(ds, f.enroll(b, fmt.Sprintf("pc-%03d", i)))
		}
		n := 0
		for r := range reports {
			for _, d := range ds {
				var evs []*mamoriv1.Event
				for j := range perReport {
					n++
					at := timestamppb.New(f.clk.Now().Add(time.Duration(j) * time.Second))
					var e *mamoriv1.Event
					switch j % 3 {
					case 0:
						e = &mamoriv1.Event{Control: "media", Kind: "set_read_only", Attributes: map[string]string{"serial": fmt.Sprintf("USB%04d", j%7), "device": "sdb"}}
					case 1:
						e = &mamoriv1.Event{Control: "login-mfa", Kind: "mfa_success", Attributes: map[string]string{"user": fmt.Sprintf("user-%d", j%5)}}
					default:
						e = &mamoriv1.Event{Control: "agent", Kind: "state_changed"}
					}
					e.Id, e.Time = fmt.Sprintf("00000000-0000-4000-8000-%012d", n), at
					evs = append(evs, e)
				}
				f.report(b, d, store.VerdictCompliant, evs...)
			}
			_ = r
		}
		w, err := incident.New(f.st, incident.DefaultConfig(), nil, f.clk.Now, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := w.Step(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
	}
}
