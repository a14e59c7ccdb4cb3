package incident_test

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/pgtest"
	"github.com/mamori-dev/mamori/server/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestTwoServersOnePostgres: two servers' watchers step concurrently on
// one PostgreSQL while reports keep arriving; every failing terminal gets
// exactly one incident and one webhook message.
func TestTwoServersOnePostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	var sts []*postgres.Store
	for range 2 {
		st, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sts = append(sts, st)
	}
	clk := &clock{t: t0}
	if _, err := sts[0].SetPolicy(t.Context(), store.PolicyChange{Policy: policy.Default(), Actor: "test", At: t0}, 0); err != nil {
		t.Fatal(err)
	}
	tok := []byte("token-hash-0000000000000000000000")
	if err := sts[0].CreateToken(t.Context(), store.Token{ID: "tok", Hash: tok, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Uses: 1000}); err != nil {
		t.Fatal(err)
	}
	hook := startWebhook(t)
	var ws []*incident.Watcher
	for _, st := range sts {
		w, err := incident.New(st, incident.DefaultConfig(), []incident.Channel{&incident.Webhook{URL: hook.srv.URL, Secret: hook.secret}}, clk.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	const n = 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, w := range ws {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.Step(t.Context()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range n {
		st := sts[i%2]
		res, err := st.Enroll(t.Context(), store.EnrollParams{TokenHash: tok, Now: t0, NewDeviceID: fmt.Sprintf("dev-%02d", i),
			Facts: &mamoriv1.DeviceFacts{Hostname: fmt.Sprintf("t-%02d", i), MachineId: fmt.Sprintf("m-%02d", i)},
			Sign:  func(string) ([]byte, string, error) { return []byte("c"), strconv.Itoa(i), nil }})
		if err != nil {
			t.Fatal(err)
		}
		d := res.Device
		for range 3 { // the same failure reported three times, by either server
			if _, err := sts[(i+1)%2].IngestReports(t.Context(), []store.ReportInput{{DeviceID: d.ID, CertSerial: d.CertSerial, ReceivedAt: t0,
				PolicyVersion: 1, Verdict: store.VerdictNoncompliant}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, w := range ws { // a last step each, after everything committed
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	incs, err := sts[0].Incidents(t.Context(), store.IncidentFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, in := range incs {
		per[in.DeviceID]++
	}
	if len(incs) != n || len(per) != n {
		t.Errorf("%d incidents over %d devices, want %d each", len(incs), len(per), n)
	}
	if got := len(hook.received()); got != n {
		t.Errorf("%d webhook messages, want %d", got, n)
	}
}
