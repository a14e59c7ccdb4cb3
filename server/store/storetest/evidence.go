package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// testEvidence: daily snapshots upsert per day; the watcher derives
// control states, search terms and incidents from stored rows after its
// cursors, once; incidents move open -> acknowledged -> closed only; the
// outbox leases each notification to one claimer; operator admin.
func testEvidence(t *testing.T, st store.Store) {
	ctx := t.Context()
	f := newFixture(t, st)

	// Daily snapshots: the same day twice is one row, the later wins.
	must(t, st.PutDailySnapshot(ctx, store.DailySnapshot{Day: "2026-04-01", FleetCounts: store.FleetCounts{Total: 3, Compliant: 1}, TakenAt: t0}))
	must(t, st.PutDailySnapshot(ctx, store.DailySnapshot{Day: "2026-04-01", FleetCounts: store.FleetCounts{Total: 4, Compliant: 2}, TakenAt: t0.Add(time.Hour)}))
	must(t, st.PutDailySnapshot(ctx, store.DailySnapshot{Day: "2026-04-01", FleetCounts: store.FleetCounts{Total: 9}, TakenAt: t0.Add(-time.Hour)}))
	must(t, st.PutDailySnapshot(ctx, store.DailySnapshot{Day: "2026-04-02", FleetCounts: store.FleetCounts{Total: 5, Noncompliant: 1}, TakenAt: t0.Add(24 * time.Hour)}))
	snaps, err := st.DailySnapshots(ctx, "2026-03-01", "2026-04-30")
	must(t, err)
	diff(t, "daily snapshots", []store.DailySnapshot{
		{Day: "2026-04-01", FleetCounts: store.FleetCounts{Total: 4, Compliant: 2}, TakenAt: us(t0.Add(time.Hour))},
		{Day: "2026-04-02", FleetCounts: store.FleetCounts{Total: 5, Noncompliant: 1}, TakenAt: us(t0.Add(24 * time.Hour))},
	}, snaps)

	a := f.enroll("m-ev-a", "ev-a", t0).Device
	b := f.enroll("m-ev-b", "ev-b", t0).Device
	ev := func(id, control, kind string, attrs map[string]string) *mamoriv1.Event {
		return &mamoriv1.Event{Id: id, Time: timestamppb.New(t0.Add(time.Minute)), Control: control, Kind: kind, Attributes: attrs}
	}
	f.ingestOK(report(a, t0.Add(time.Minute), store.VerdictNoncompliant,
		[]*mamoriv1.ControlStatus{status("media", mamoriv1.ControlState_CONTROL_STATE_FAILED, "x"), status("agent", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")},
		ev("e1", "login-mfa", "mfa_lockout", map[string]string{"user": "yamada"}),
		ev("e2", "media", "set_read_only", map[string]string{"serial": "USB-123", "device": "sda"}),
		ev("e3", "media", "set_read_only", map[string]string{"serial": "USB-123", "device": "sda"}),
	))
	f.ingestOK(report(b, t0.Add(time.Minute), store.VerdictCompliant,
		[]*mamoriv1.ControlStatus{status("agent", mamoriv1.ControlState_CONTROL_STATE_ENFORCED, "")},
		ev("e4", "login-mfa", "mfa_success", map[string]string{"user": "yamashita"})))

	var seen store.WatchBatch
	judge := func(bt store.WatchBatch) ([]store.SearchTerm, []store.Signal, error) {
		seen.Events = append(seen.Events, bt.Events...)
		seen.History = append(seen.History, bt.History...)
		seen.Failing = append(seen.Failing, bt.Failing...)
		var terms []store.SearchTerm
		var sigs []store.Signal
		for _, e := range bt.Events {
			if u := e.Event.GetAttributes()["user"]; u != "" {
				terms = append(terms, store.SearchTerm{Kind: store.TermUser, Term: u, DeviceID: e.DeviceID, At: e.ReceivedAt})
			}
			if s := e.Event.GetAttributes()["serial"]; s != "" {
				terms = append(terms, store.SearchTerm{Kind: store.TermUSB, Term: s, DeviceID: e.DeviceID, At: e.ReceivedAt})
				ref := fmt.Sprint("seq:", e.Seq)
				sigs = append(sigs, store.Signal{Rule: "usb", DeviceID: e.DeviceID, Episode: ref, Ref: ref, At: e.ReceivedAt,
					Threshold: 2, Window: time.Hour, Summary: "usb"})
			}
		}
		for _, d := range bt.Failing {
			sigs = append(sigs, store.Signal{Rule: "nc", DeviceID: d.DeviceID, Episode: d.At.String(), At: d.At, Summary: "<nc>",
				SummaryMsg: store.IncidentMsg{ID: "incident.summary.noncompliant", Args: []string{"t:2026-04-01T00:30:00Z", "s:改行\nと\x00", "s:" + strings.Repeat("長", 400)}}})
		}
		return terms, sigs, nil
	}
	params := store.WatchParams{Now: t0.Add(2 * time.Minute), Limit: 2, Margin: time.Minute, Channels: []string{"email", "webhook"}}
	total := store.WatchResult{}
	for i := 0; ; i++ {
		res, err := st.Watch(ctx, params, judge)
		must(t, err)
		total.Events += res.Events
		total.History += res.History
		total.Opened += res.Opened
		total.Bumped += res.Bumped
		if !res.More {
			break
		}
		if i > 10 {
			t.Fatal("Watch never caught up")
		}
	}
	if total.Events != 4 || total.History != 3 {
		t.Errorf("watch read %d events and %d history rows, want 4 and 3", total.Events, total.History)
	}
	// The USB rule reached its threshold of 2 once: one incident, and the
	// non-compliant device one more.
	if total.Opened != 2 {
		t.Errorf("watch opened %d incidents, want 2", total.Opened)
	}
	// Running again reads nothing new and opens nothing (cursors durable,
	// episodes unique), though the failing sweep sees device a again.
	res, err := st.Watch(ctx, params, judge)
	must(t, err)
	if res.Events != 0 || res.History != 0 || res.Opened != 0 || res.Bumped != 0 {
		t.Errorf("second watch: %+v, want nothing", res)
	}

	counts, err := st.CountByControl(ctx)
	must(t, err)
	diff(t, "count by control", []store.ControlCount{
		{Control: "agent", State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, N: 2},
		{Control: "media", State: mamoriv1.ControlState_CONTROL_STATE_FAILED, N: 1},
	}, counts)

	hits, err := st.SearchTerms(ctx, store.TermUser, "yama", 10)
	must(t, err)
	if len(hits) != 2 || hits[0].Term != "yamada" || hits[0].DeviceID != a.ID || hits[0].Hostname != "ev-a" || hits[1].Term != "yamashita" {
		t.Errorf("search users yama: %+v", hits)
	}
	hits, err = st.SearchTerms(ctx, store.TermUSB, "USB-1", 10)
	must(t, err)
	if len(hits) != 1 || hits[0].DeviceID != a.ID {
		t.Errorf("search usb: %+v", hits)
	}
	hits, err = st.SearchTerms(ctx, store.TermUSB, "yama", 10)
	must(t, err)
	if len(hits) != 0 {
		t.Errorf("search kinds mixed: %+v", hits)
	}

	incs, err := st.Incidents(ctx, store.IncidentFilter{State: "active"})
	must(t, err)
	if len(incs) != 2 {
		t.Fatalf("active incidents: %d, want 2", len(incs))
	}
	// The summary as a message comes back as stored (arguments cut at
	// store.MaxIncidentMsgArgLen bytes, on a rune); without one, zero.
	for _, in := range incs {
		switch in.Rule {
		case "nc":
			long := "s:" + strings.Repeat("長", (store.MaxIncidentMsgArgLen-len("s:"))/len("長"))
			diff(t, "summary message", store.IncidentMsg{ID: "incident.summary.noncompliant",
				Args: []string{"t:2026-04-01T00:30:00Z", "s:改行\nと\x00", long}}, in.SummaryMsg)
		case "usb":
			diff(t, "no summary message", store.IncidentMsg{}, in.SummaryMsg)
		}
	}
	var usb store.Incident
	for _, in := range incs {
		if in.Rule == "usb" {
			usb = in
		}
	}
	// Each opening is in the audit chain, committed by the step that
	// opened it: actor system, the incident's ID, rule, device and summary.
	opens := map[string]string{}
	aud, err := st.ListAudit(ctx, 0, 1000)
	must(t, err)
	for _, r := range aud {
		if r.Action == "incident.open" && r.Actor == "system" {
			opens[r.Target] = r.Detail
		}
	}
	for _, in := range incs {
		want := in.Rule + " " + in.DeviceID + ": " + in.Summary
		if got := opens[fmt.Sprint(in.ID)]; got != want {
			t.Errorf("audit of incident %d: %q, want %q", in.ID, got, want)
		}
	}
	if len(opens) != len(incs) {
		t.Errorf("%d incident.open records for %d incidents", len(opens), len(incs))
	}
	if usb.ID == 0 || usb.Occurrences != 2 || usb.State != store.IncidentOpen || usb.Hostname != "ev-a" {
		t.Errorf("usb incident: %+v", usb)
	}

	// Transitions: open -> acknowledged -> closed; nothing after closed.
	_, err = st.TransitionIncident(ctx, usb.ID, store.IncidentOpen, "op", "", t0)
	if err == nil {
		t.Error("transition to open accepted")
	}
	ack, err := st.TransitionIncident(ctx, usb.ID, store.IncidentAcknowledged, "op-1", "見ています", t0.Add(3*time.Minute))
	must(t, err)
	if ack.State != store.IncidentAcknowledged || ack.AckedBy != "op-1" || ack.AckNote != "見ています" || !ack.AckedAt.Equal(us(t0.Add(3*time.Minute))) {
		t.Errorf("acknowledged: %+v", ack)
	}
	_, err = st.TransitionIncident(ctx, usb.ID, store.IncidentAcknowledged, "op-1", "", t0)
	wantErr(t, "acknowledge twice", err, store.ErrConflict)
	cl, err := st.TransitionIncident(ctx, usb.ID, store.IncidentClosed, "op-2", "done", t0.Add(4*time.Minute))
	must(t, err)
	if cl.State != store.IncidentClosed || cl.ClosedBy != "op-2" {
		t.Errorf("closed: %+v", cl)
	}
	_, err = st.TransitionIncident(ctx, usb.ID, store.IncidentClosed, "op-2", "", t0)
	wantErr(t, "close twice", err, store.ErrConflict)
	_, err = st.GetIncident(ctx, 999999)
	wantErr(t, "unknown incident", err, store.ErrNotFound)

	// Outbox: 2 incidents x 2 channels; a lease hides rows from a second
	// claimer until it expires.
	now := t0.Add(5 * time.Minute)
	ns, err := st.ClaimNotifications(ctx, now, now.Add(time.Minute), 10)
	must(t, err)
	if len(ns) != 4 {
		t.Fatalf("claimed %d notifications, want 4", len(ns))
	}
	if ns[0].Attempts != 1 || ns[0].Incident.ID == 0 || ns[0].Kind != "open" {
		t.Errorf("claimed notification: %+v", ns[0])
	}
	again, err := st.ClaimNotifications(ctx, now, now.Add(time.Minute), 10)
	must(t, err)
	if len(again) != 0 {
		t.Errorf("leased notifications claimed again: %d", len(again))
	}
	must(t, st.FinishNotification(ctx, ns[0].ID, store.NotificationOutcome{State: store.NotifySent, At: now}))
	must(t, st.FinishNotification(ctx, ns[1].ID, store.NotificationOutcome{State: store.NotifyPending, NextAt: now.Add(time.Hour), Error: "refused"}))
	must(t, st.FinishNotification(ctx, ns[2].ID, store.NotificationOutcome{State: store.NotifySuppressed, At: now}))
	// After the lease: only ns[3] is due (ns[1] waits for its retry time).
	later, err := st.ClaimNotifications(ctx, now.Add(2*time.Minute), now.Add(3*time.Minute), 10)
	must(t, err)
	if len(later) != 1 || later[0].ID != ns[3].ID || later[0].Attempts != 2 {
		t.Errorf("after the lease: %+v", later)
	}
	sent, err := st.CountSent(ctx, ns[0].Channel, now.Add(-time.Hour))
	must(t, err)
	if sent != 1 {
		t.Errorf("sent on %s: %d, want 1", ns[0].Channel, sent)
	}

	// History for the export.
	hist, err := st.HistoryForDevices(ctx, []string{a.ID, b.ID}, t0.Add(time.Hour))
	must(t, err)
	if len(hist) != 3 || hist[0].DeviceID > hist[len(hist)-1].DeviceID {
		t.Errorf("history for devices: %+v", hist)
	}
	hist, err = st.HistoryForDevices(ctx, []string{a.ID}, t0)
	must(t, err)
	if len(hist) != 0 {
		t.Errorf("history before it happened: %d rows", len(hist))
	}

	// Operator admin.
	must(t, st.CreateOperator(ctx, store.Operator{ID: "op-x", Name: "高橋", Role: "helpdesk", TokenHash: []byte("hash-op-x-0000000000000000000000"), CreatedAt: t0}))
	must(t, st.SetOperatorLogin(ctx, store.OperatorLogin{OperatorID: "op-x", Login: "takahashi", PasswordHash: "x", TOTPSecret: "y", UpdatedAt: t0}))
	_, err = st.LoginFailed(ctx, "op-x", t0, 1, time.Hour)
	must(t, err)
	ops, err := st.ListOperators(ctx)
	must(t, err)
	if len(ops) != 1 || ops[0].Login != "takahashi" || ops[0].LockedUntil.IsZero() {
		t.Fatalf("operators: %+v", ops)
	}
	must(t, st.ResetLockout(ctx, "op-x", t0.Add(time.Minute)))
	// EndSessions signs the operator out everywhere, and only it.
	for _, id := range []string{"session-op-x-a-000000000000000000", "session-op-x-b-000000000000000000"} {
		must(t, st.CreateSession(ctx, store.ConsoleSession{IDHash: []byte(id), OperatorID: "op-x", CreatedAt: t0, LastSeen: t0}))
	}
	must(t, st.EndSessions(ctx, "op-x"))
	must(t, st.EndSessions(ctx, "op-x")) // none left: not an error
	for _, id := range []string{"session-op-x-a-000000000000000000", "session-op-x-b-000000000000000000"} {
		_, _, err = st.Session(ctx, []byte(id))
		wantErr(t, "session after EndSessions", err, store.ErrNotFound)
	}
	must(t, st.CreateSession(ctx, store.ConsoleSession{IDHash: []byte("session-op-x-00000000000000000000"), OperatorID: "op-x", CreatedAt: t0, LastSeen: t0}))
	must(t, st.DisableOperator(ctx, "op-x", t0.Add(2*time.Minute)))
	ops, err = st.ListOperators(ctx)
	must(t, err)
	if !ops[0].LockedUntil.IsZero() || ops[0].Failures != 0 || !ops[0].DisabledAt.Equal(us(t0.Add(2*time.Minute))) {
		t.Errorf("after reset and disable: %+v", ops[0])
	}
	_, _, err = st.Session(ctx, []byte("session-op-x-00000000000000000000"))
	wantErr(t, "session of a disabled operator", err, store.ErrNotFound)
	wantErr(t, "disable unknown", st.DisableOperator(ctx, "ghost", t0), store.ErrNotFound)
	wantErr(t, "reset unknown", st.ResetLockout(ctx, "ghost", t0), store.ErrNotFound)

	// A revoked device no longer counts by control.
	_, err = st.RevokeDevice(ctx, b.ID, "lost", t0.Add(time.Hour))
	must(t, err)
	counts, err = st.CountByControl(ctx)
	must(t, err)
	diff(t, "count by control after a revocation", []store.ControlCount{
		{Control: "agent", State: mamoriv1.ControlState_CONTROL_STATE_ENFORCED, N: 1},
		{Control: "media", State: mamoriv1.ControlState_CONTROL_STATE_FAILED, N: 1},
	}, counts)
}
