package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"github.com/mamori-dev/mamori/server/store/internal/codec"
)

// TestEventKindBackfill: events stored before migration 0014 (no kind
// column value) are filled in when the store opens, so a file written
// under an exception before the upgrade is in the evidence report after
// it; a damaged event does not stop the store from opening.
func TestEventKindBackfill(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "mamori.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, "INSERT INTO devices (id, enrolled_at, cert_serial, verdict) VALUES ('d', 0, 's', 'NEVER_REPORTED')"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	blob := func(kind string) []byte {
		b, err := codec.Marshal(&mamoriv1.Event{Id: kind, Kind: kind, Control: "media", Attributes: map[string]string{"path": "/report.xlsx"}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// As an older server wrote them: no kind. More than two backfill
	// batches of them (500 each), in one transaction.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 1107
	for i := range n {
		kind := "usb_blocked"
		if i == n-3 {
			kind = "media_file_written"
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO events (device_id, event_id, received_at, event) VALUES ('d', ?, ?, ?)",
			fmt.Sprint("e", i), codec.Micros(at), blob(kind)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, "INSERT INTO events (device_id, event_id, received_at, event) VALUES ('d', 'broken', ?, x'ffff')", codec.Micros(at)); err != nil {
		t.Fatal(err)
	}
	filter := store.FileLogFilter{From: at, To: at.Add(time.Second), Limit: 10}
	if got, err := s.ListFileLog(ctx, filter); err != nil || len(got) != 0 {
		t.Fatalf("before the backfill: %d records, %v (the kind is not known yet)", len(got), err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen with a damaged event: %v", err)
	}
	defer s.Close()
	got, err := s.ListFileLog(ctx, filter)
	if err != nil || len(got) != 1 || got[0].Event.GetKind() != "media_file_written" {
		t.Fatalf("after the backfill: %+v, %v", got, err)
	}
	var missing int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM events WHERE kind IS NULL").Scan(&missing); err != nil || missing != 0 {
		t.Fatalf("%d events still without a kind (%v)", missing, err)
	}
	var broken string
	if err := s.r.QueryRowContext(ctx, "SELECT kind FROM events WHERE event_id = 'broken'").Scan(&broken); err != nil || broken != "" {
		t.Fatalf("damaged event's kind = %q, %v; want ''", broken, err)
	}
	if again, err := s.BackfillEventKinds(ctx); err != nil || again != 0 {
		t.Fatalf("second backfill filled %d (%v), want 0", again, err)
	}
}

// TestFileLogUsesIndex: the report's query walks the partial index of
// file log records, not the events table (which holds every event of the
// fleet).
func TestFileLogUsesIndex(t *testing.T) {
	s := openTest(t)
	for _, group := range []string{"", "zeimu"} {
		q := "SELECT e.seq FROM events e WHERE e.kind IN ('" + strings.Join(store.FileLogKinds, "', '") + "') AND e.received_at >= 0 AND e.received_at < 9"
		if group != "" {
			q += " AND (SELECT d.device_group FROM devices d WHERE d.id = e.device_id) = 'zeimu'"
		}
		q += " ORDER BY e.received_at, e.seq LIMIT 10"
		rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "events_file_log") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("group %q: plan does not use events_file_log:\n%s", group, strings.Join(plan, "\n"))
		}
	}
}
