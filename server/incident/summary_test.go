package incident_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/incident"
	"github.com/mamori-dev/mamori/server/store"
)

var (
	jstZ   = time.FixedZone("JST", 9*3600)
	whenJA = func(t time.Time) string { return t.In(jstZ).Format("2006-01-02 15:04 MST") }
	span   = func(d time.Duration) string { return d.String() }
)

// TestSummaryLanguages: every rule's summary is stored as a message of
// the catalogue, with the arguments it takes, and reads in Japanese and
// English with times in the reader's zone; an incident without a message
// (opened before) or with a message that does not fit the catalogue
// shows its stored text.
func TestSummaryLanguages(t *testing.T) {
	at := time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC)
	b := store.WatchBatch{
		Now:     at,
		Failing: []store.DeviceMark{{DeviceID: "d1", At: at}},
		Silent:  []store.DeviceMark{{DeviceID: "d2", At: at}},
	}
	ev := func(control, kind string, attrs map[string]string) store.StoredEvent {
		return store.StoredEvent{DeviceID: "d3", Seq: 1, ReceivedAt: at, Event: &mamoriv1.Event{Control: control, Kind: kind, Attributes: attrs}}
	}
	b.Events = []store.StoredEvent{
		ev("media", "set_read_only", map[string]string{"device": "sdb", "serial": "USB1"}),
		ev("login-mfa", "mfa_lockout", map[string]string{"user": "yamada\nInjected: x"}),
		ev("agent", "events_dropped", map[string]string{"count": "3", "reason": "full"}),
		ev("agent", "spool_damaged", map[string]string{"records_lost_estimate": "2", "file": "seg1"}),
		ev("isolation", "finding", map[string]string{"severity": "violation", "detail": "10.0.0.1"}),
		ev("media", "still_writable", map[string]string{"device": "sdb", "serial": "USB1", "rounds": "2", "problem": "EIO"}),
		ev("media", "policy_drift", map[string]string{"reapplied": "false"}),
	}
	b.EnrollFailures = []store.EnrollFailure{{ID: 1, Source: "192.0.2.1", At: at}}
	_, sigs, err := incident.DefaultRules().Judge(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 10 {
		t.Fatalf("%d signals, want 10", len(sigs))
	}
	ja, en := i18n.NewPrinter(i18n.Japanese), i18n.NewPrinter(i18n.English)
	for _, sg := range sigs {
		in := store.Incident{Rule: sg.Rule, Summary: sg.Summary, SummaryMsg: store.DecodeIncidentMsg(store.EncodeIncidentMsg(sg.SummaryMsg))}
		if in.SummaryMsg.ID == "" {
			t.Errorf("%s: no summary message", sg.Rule)
			continue
		}
		j := incident.Summary(ja, in, whenJA, span)
		e := incident.Summary(en, in, func(t time.Time) string { return t.UTC().Format(time.RFC3339) }, span)
		if j == sg.Summary || e == sg.Summary || j == e || strings.Contains(j, "[") || strings.ContainsAny(j+e, "\n\r") {
			t.Errorf("%s (%s): ja %q, en %q", sg.Rule, in.SummaryMsg.ID, j, e)
		}
		if sg.Rule == incident.RuleNoncompliant && (!strings.Contains(j, "2026-12-01 09:30 JST") || !strings.Contains(e, "2026-12-01T00:30:00Z")) {
			t.Errorf("times not in the reader's zone: %q / %q", j, e)
		}
	}
	// Notifications: both languages in the text, the message in the JSON.
	in := store.Incident{ID: 7, Rule: incident.RuleNoncompliant, Summary: sigs[0].Summary, SummaryMsg: sigs[0].SummaryMsg}
	m := incident.Message{Kind: "open", Incident: in}
	if txt := m.Text(); !strings.Contains(txt, "2026-12-01 09:30 JST から非準拠 / Non-compliant since 2026-12-01T00:30:00Z") {
		t.Errorf("notification text:\n%s", txt)
	}
	var pl map[string]any
	if err := json.Unmarshal(m.JSON(), &pl); err != nil || pl["summary_id"] != "incident.summary.noncompliant" || pl["summary_args"] == nil {
		t.Errorf("webhook JSON: %s (%v)", m.JSON(), err)
	}
	old := store.Incident{Summary: "非準拠になった日時 2026-12-01 09:30 JST / non-compliant since 2026-12-01T00:30:00Z"}
	for name, m := range map[string]store.IncidentMsg{
		"old row":            {},
		"unknown id":         {ID: "incident.summary.nope", Args: []string{"s:x"}},
		"not a summary":      {ID: "console.err.internal"},
		"too few arguments":  {ID: "incident.summary.noncompliant"},
		"too many arguments": {ID: "incident.summary.noncompliant", Args: []string{"t:2026-12-01T00:30:00Z", "s:x"}},
		"untyped argument":   {ID: "incident.summary.noncompliant", Args: []string{"2026-12-01T00:30:00Z"}},
		"bad time":           {ID: "incident.summary.noncompliant", Args: []string{"t:yesterday"}},
		"bad duration":       {ID: "incident.summary.noncompliant", Args: []string{"d:forever"}},
	} {
		in := old
		in.SummaryMsg = m
		if got := incident.Summary(ja, in, whenJA, span); got != old.Summary {
			t.Errorf("%s: %q, want the stored text", name, got)
		}
	}
}

// FuzzDecodeIncidentMsg: whatever a summary_msg column holds decodes to a
// message within bounds or to none, renders without panicking, and a
// message encodes to what decodes back to it.
func FuzzDecodeIncidentMsg(f *testing.F) {
	f.Add(`{"id":"incident.summary.noncompliant","args":["t:2026-12-01T00:30:00Z"]}`)
	f.Add(`{"id":"incident.summary.usb-blocked","args":["s:5","d:10m0s","s:sdb","s:\u0000"]}`)
	f.Add(`{"id":1}`)
	f.Add(`[]`)
	f.Add("")
	ja := i18n.NewPrinter(i18n.Japanese)
	f.Fuzz(func(t *testing.T, s string) {
		m := store.DecodeIncidentMsg(s)
		if len(m.Args) > store.MaxIncidentMsgArgs {
			t.Fatalf("%d arguments", len(m.Args))
		}
		_ = incident.Summary(ja, store.Incident{Summary: "old", SummaryMsg: m}, whenJA, span)
		if m.ID == "" {
			return
		}
		again := store.DecodeIncidentMsg(store.EncodeIncidentMsg(m))
		b1, _ := json.Marshal(again)
		b2, _ := json.Marshal(store.DecodeIncidentMsg(store.EncodeIncidentMsg(again)))
		if string(b1) != string(b2) {
			t.Fatalf("encoding is not stable: %s vs %s", b1, b2)
		}
	})
}
