package storetest

import (
	"fmt"
	"testing"
	"time"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func fileEvent(id, kind, path string) *mamoriv1.Event {
	return &mamoriv1.Event{Id: id, Time: timestamppb.New(t0), Control: "media", Kind: kind,
		Attributes: map[string]string{"path": path, "exception_id": "x-1"}}
}

// testFileLog: the file log's records (written under an exception, and
// lost records) are listed by receipt time, in order, page by page, per
// group; other kinds are not.
func testFileLog(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	a := f.enroll("m-a", "a", t0).Device
	b := f.enroll("m-b", "b", t0).Device
	_, err := st.SetDeviceGroup(ctx, b.ID, "zeimu")
	must(t, err)
	// Seven reports a minute apart; each device sends a file record, an
	// ordinary event, and every third time a lost-records note.
	for i := range 7 {
		at := t0.Add(time.Duration(i) * time.Minute)
		for _, d := range []store.Device{a, b} {
			evs := []*mamoriv1.Event{
				fileEvent(fmt.Sprintf("%s-f%d", d.ID, i), "media_file_written", fmt.Sprintf("/%s/%d.txt", d.ID, i)),
				event(fmt.Sprintf("%s-u%d", d.ID, i)),
			}
			if i%3 == 0 {
				evs = append(evs, fileEvent(fmt.Sprintf("%s-d%d", d.ID, i), "media_file_events_dropped", ""))
			}
			f.ingestOK(report(d, at, store.VerdictCompliant, nil, evs...))
		}
	}
	list := func(filter store.FileLogFilter) []string {
		t.Helper()
		var ids []string
		for range 100 {
			page, err := st.ListFileLog(ctx, filter)
			must(t, err)
			for i, e := range page {
				if i > 0 && (e.ReceivedAt.Before(page[i-1].ReceivedAt) || e.ReceivedAt.Equal(page[i-1].ReceivedAt) && e.Seq <= page[i-1].Seq) {
					t.Fatalf("record %d out of order", e.Seq)
				}
				ids = append(ids, e.Event.GetId())
			}
			if len(page) < filter.Limit {
				return ids
			}
			last := page[len(page)-1]
			filter.After = store.FileLogCursor{ReceivedAt: last.ReceivedAt, Seq: last.Seq}
		}
		t.Fatal("paging did not end")
		return nil
	}
	// Minutes 2..4 (To excluded), pages of 2.
	got := list(store.FileLogFilter{From: t0.Add(2 * time.Minute), To: t0.Add(5 * time.Minute), Limit: 2})
	want := []string{a.ID + "-f2", b.ID + "-f2", a.ID + "-f3", a.ID + "-d3", b.ID + "-f3", b.ID + "-d3", a.ID + "-f4", b.ID + "-f4"}
	// Each report is its own batch, so the sequence follows the loop.
	diff(t, "file log of minutes 2-4", want, got)
	// One group only, the whole period, one page.
	got = list(store.FileLogFilter{From: t0, To: t0.Add(time.Hour), Group: "zeimu", Limit: 100})
	if len(got) != 7+3 {
		t.Fatalf("group zeimu: %d records %v, want 10", len(got), got)
	}
	for _, id := range got {
		if id[:len(b.ID)] != b.ID {
			t.Fatalf("group zeimu lists %s of another device", id)
		}
	}
	// An empty period and a group nobody is in list nothing.
	if got := list(store.FileLogFilter{From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour), Limit: 10}); len(got) != 0 {
		t.Fatalf("empty period: %v", got)
	}
	if got := list(store.FileLogFilter{From: t0, To: t0.Add(time.Hour), Group: "nobody", Limit: 10}); len(got) != 0 {
		t.Fatalf("empty group: %v", got)
	}
	// One device, newest first, two pages of 4.
	var newest []string
	nf := store.FileLogFilter{From: t0, To: t0.Add(time.Hour), DeviceID: a.ID, Newest: true, Limit: 4}
	for range 2 {
		page, err := st.ListFileLog(ctx, nf)
		must(t, err)
		for _, e := range page {
			newest = append(newest, e.Event.GetId())
		}
		last := page[len(page)-1]
		nf.After = store.FileLogCursor{ReceivedAt: last.ReceivedAt, Seq: last.Seq}
	}
	diff(t, "device a's file log, newest first", []string{a.ID + "-d6", a.ID + "-f6", a.ID + "-f5", a.ID + "-f4", a.ID + "-d3", a.ID + "-f3", a.ID + "-f2", a.ID + "-f1"}, newest)
	// The record carries what the agent sent.
	page, err := st.ListFileLog(ctx, store.FileLogFilter{From: t0, To: t0.Add(time.Minute), Limit: 1})
	must(t, err)
	if len(page) != 1 || page[0].Event.GetAttributes()["path"] != "/"+a.ID+"/0.txt" || page[0].DeviceID != a.ID || !page[0].ReceivedAt.Equal(us(t0)) {
		t.Fatalf("first record: %+v", page)
	}
}
