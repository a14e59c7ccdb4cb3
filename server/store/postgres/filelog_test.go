package postgres

import (
	"fmt"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// TestEventKindBackfill: events stored before migration 0014 get their
// kind from the stored event (Open runs the backfill; here it is called
// again after rows were written as an older server wrote them), so the
// evidence report lists a file written before the upgrade.
func TestEventKindBackfill(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if _, err := s.pool.Exec(ctx, "INSERT INTO devices (id, enrolled_at, cert_serial, verdict) VALUES ('d', now(), 's', 'NEVER_REPORTED')"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := range 1107 {
		kind := "usb_blocked"
		if i == 1100 {
			kind = "media_file_written"
		}
		blob, err := codec.Marshal(&mamoriv1.Event{Id: fmt.Sprint(i), Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, "INSERT INTO events (device_id, event_id, received_at, event) VALUES ('d', $1, $2, $3)", fmt.Sprint("e", i), at, blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO events (device_id, event_id, received_at, event) VALUES ('d', 'broken', $1, '\\xffff')", at); err != nil {
		t.Fatal(err)
	}
	n, err := s.BackfillEventKinds(ctx)
	if err != nil || n != 1108 {
		t.Fatalf("backfill: %d, %v; want 1108", n, err)
	}
	got, err := s.ListFileLog(ctx, store.FileLogFilter{From: at, To: at.Add(time.Second), Group: "", Limit: 10})
	if err != nil || len(got) != 1 || got[0].Event.GetId() != "1100" {
		t.Fatalf("after the backfill: %+v, %v", got, err)
	}
	if n, err := s.BackfillEventKinds(ctx); err != nil || n != 0 {
		t.Fatalf("second backfill: %d, %v", n, err)
	}
}
