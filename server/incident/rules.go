// Package incident turns what terminals reported into incidents (policy
// 6(7) 監視) and notifies people about them.
//
// Detection is derived from stored data, never from in-memory hooks: the
// watcher reads the events and control history stored after its durable
// cursors, and the devices that turned non-compliant or silent, inside one
// store transaction (store.Evidence.Watch). Rules (this file) are a pure
// function of that batch; the store opens at most one incident per (rule,
// device) and never the same (rule, device, episode) twice, so a crash, a
// re-run or two servers on one database cannot open duplicates.
// Notifications are rows of a durable outbox, delivered with retries by
// Notifier.
package incident

import (
	"fmt"
	"strconv"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	"github.com/mamori-dev/mamori/server/store"
)

// Rule names, as stored and shown.
const (
	RuleNoncompliant = "noncompliant" // a device turned non-compliant
	RuleUSBBlocked   = "usb-blocked"  // repeated blocked USB writes on one terminal
	RuleMFALockout   = "mfa-lockout"  // a user locked out of MFA login
	RuleAgentSilent  = "agent-silent" // no report for longer than max report age
	RulePolicyDrift  = "policy-drift" // the agent found its enforcement changed and re-applied it
	RuleEventsLost   = "events-lost"  // the agent's spool refused events (full) or found them damaged
	// RuleTierReachable: the isolation control proved the terminal can
	// reach another tier (a canary answered), in any mode.
	RuleTierReachable = "tier-reachable"
	// RuleEnrollGuessing: one address had many enrolments refused for
	// their token (unknown or expired) within a short time: someone is
	// guessing tokens, or a script runs with a revoked one. The incident's
	// device is "source:" and the address.
	RuleEnrollGuessing = "enroll-token-guessing"
	// RuleMediaWritable: a removable device the policy makes read-only or
	// blocks stayed writable for more than one status round although the
	// agent acted again (agent/media still_writable).
	RuleMediaWritable = "media-writable"
)

// SourcePrefix marks an incident's subject as a caller's address, not a
// device.
const SourcePrefix = "source:"

// Rules is the tunable part of the rules.
type Rules struct {
	// USBThreshold blocked writes within USBWindow on one terminal open an
	// incident.
	USBThreshold int
	USBWindow    time.Duration
	// EnrollFailThreshold enrolments refused for their token from one
	// address within EnrollFailWindow open an incident.
	EnrollFailThreshold int
	EnrollFailWindow    time.Duration
	// EventHorizon: events older than this (by their own time) feed the
	// search but open no incident — the first run over a year of stored
	// events, or a terminal sending its spool after weeks offline, must
	// not page anyone about the past.
	EventHorizon time.Duration
}

// DefaultRules: 5 blocked writes within 10 minutes; 10 enrolments refused
// for their token from one address within 10 minutes (a terminal with a
// mistyped token retries with back-off: a handful); events older than a
// day open nothing.
func DefaultRules() Rules {
	return Rules{USBThreshold: 5, USBWindow: 10 * time.Minute, EnrollFailThreshold: 10, EnrollFailWindow: 10 * time.Minute,
		EventHorizon: 24 * time.Hour}
}

// Validate checks the rules.
func (r Rules) Validate() error {
	if r.USBThreshold < 1 || r.USBWindow <= 0 {
		return fmt.Errorf("incident rules: the USB threshold must be at least 1 and the window positive")
	}
	if r.EnrollFailThreshold < 1 || r.EnrollFailWindow <= 0 {
		return fmt.Errorf("incident rules: the enrolment failure threshold must be at least 1 and the window positive")
	}
	return nil
}

// blockedKinds are the media control's events that mean "a write to
// removable media was prevented" (agent/media: set_read_only,
// remounted_read_only, usb_blocked, writes_cut: a busy read-write mount cut
// off). would_block (monitor mode) blocks nothing and is not counted.
var blockedKinds = map[string]bool{"set_read_only": true, "remounted_read_only": true, "usb_blocked": true, "writes_cut": true}

// driftKinds: the agent found its enforcement changed under it and put it
// back (agent/media registry policy and read-back, agent/isolation
// nftables).
var driftKinds = map[string]bool{"policy_drift": true, "ruleset_reapplied": true, "reapplied": true}

// jst formats a time for the Japanese half of a summary.
func jst(t time.Time) string {
	return t.In(time.FixedZone("JST", 9*3600)).Format("2006-01-02 15:04 MST")
}

func reapplied(attrs map[string]string) string {
	if attrs["reapplied"] == "false" {
		return "; NOT re-applied"
	}
	return ""
}

// msg is a summary as a catalogue message (store.IncidentMsg); the
// catalogue (internal/i18n, messages_incident.go) has its Japanese and
// English text.
func msg(id string, args ...string) store.IncidentMsg { return store.IncidentMsg{ID: id, Args: args} }

// Typed arguments of a message (store.IncidentMsg).
func at(t time.Time) string      { return "t:" + t.UTC().Format(time.RFC3339Nano) }
func dur(d time.Duration) string { return "d:" + d.String() }
func text(s string) string       { return "s:" + s }

func driftMsg(control, kind string, attrs map[string]string) store.IncidentMsg {
	if attrs["reapplied"] == "false" {
		return msg("incident.summary.policy-drift-not-reapplied", text(control), text(kind))
	}
	return msg("incident.summary.policy-drift", text(control), text(kind))
}

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// Judge is the pure rule function handed to store.Evidence.Watch.
func (r Rules) Judge(b store.WatchBatch) ([]store.SearchTerm, []store.Signal, error) {
	var terms []store.SearchTerm
	var sigs []store.Signal
	for _, d := range b.Failing {
		sigs = append(sigs, store.Signal{Rule: RuleNoncompliant, DeviceID: d.DeviceID, Episode: micros(d.At), At: d.At,
			Summary:    "非準拠になった日時 " + jst(d.At) + " / non-compliant since " + d.At.UTC().Format(time.RFC3339),
			SummaryMsg: msg("incident.summary.noncompliant", at(d.At))})
	}
	for _, d := range b.Silent {
		sigs = append(sigs, store.Signal{Rule: RuleAgentSilent, DeviceID: d.DeviceID, Episode: micros(d.At), At: d.At,
			Summary:    "最終報告 " + jst(d.At) + " 以降報告なし / no report since " + d.At.UTC().Format(time.RFC3339),
			SummaryMsg: msg("incident.summary.agent-silent", at(d.At))})
	}
	for _, d := range b.Enrolled {
		if s := d.Facts.GetSerialNumber(); s != "" {
			terms = append(terms, store.SearchTerm{Kind: store.TermSerial, Term: s, DeviceID: d.ID, At: d.EnrolledAt})
		}
	}
	for _, f := range b.EnrollFailures {
		ref := "enroll-failure:" + strconv.FormatInt(f.ID, 10)
		sigs = append(sigs, store.Signal{Rule: RuleEnrollGuessing, DeviceID: SourcePrefix + f.Source, Episode: ref, At: f.At, Ref: ref,
			Threshold: r.EnrollFailThreshold, Window: r.EnrollFailWindow,
			Summary: fmt.Sprintf("%s 以内に登録トークンの拒否が %d 回以上（送信元 %s） / %d or more enrolments refused for their token within %s (from %s)",
				r.EnrollFailWindow, r.EnrollFailThreshold, f.Source, r.EnrollFailThreshold, r.EnrollFailWindow, f.Source),
			SummaryMsg: msg("incident.summary.enroll-guessing", text(strconv.Itoa(r.EnrollFailThreshold)), dur(r.EnrollFailWindow), text(f.Source))})
	}
	for _, e := range b.Events {
		ev := e.Event
		at := e.ReceivedAt
		if t := ev.GetTime(); t != nil && t.IsValid() && !t.AsTime().IsZero() {
			at = t.AsTime()
		}
		attrs := ev.GetAttributes()
		if u := attrs["user"]; u != "" {
			terms = append(terms, store.SearchTerm{Kind: store.TermUser, Term: u, DeviceID: e.DeviceID, At: at})
		}
		if ev.GetControl() == policy.ControlMedia && attrs["serial"] != "" {
			terms = append(terms, store.SearchTerm{Kind: store.TermUSB, Term: attrs["serial"], DeviceID: e.DeviceID, At: at})
		}
		if r.EventHorizon > 0 && !b.Now.IsZero() && at.Before(b.Now.Add(-r.EventHorizon)) {
			continue
		}
		ref := "seq:" + strconv.FormatInt(e.Seq, 10)
		switch {
		case ev.GetControl() == policy.ControlMedia && blockedKinds[ev.GetKind()]:
			sigs = append(sigs, store.Signal{Rule: RuleUSBBlocked, DeviceID: e.DeviceID, Episode: ref, At: at, Ref: ref,
				Threshold: r.USBThreshold, Window: r.USBWindow,
				Summary: fmt.Sprintf("%s 以内に外部記憶媒体への書込み阻止が %d 回以上（最後: %s %s） / %d or more blocked removable-media writes within %s (last: %s %s)",
					r.USBWindow, r.USBThreshold, attrs["device"], attrs["serial"], r.USBThreshold, r.USBWindow, attrs["device"], attrs["serial"]),
				SummaryMsg: msg("incident.summary.usb-blocked", text(strconv.Itoa(r.USBThreshold)), dur(r.USBWindow), text(attrs["device"]), text(attrs["serial"]))})
		case ev.GetKind() == "mfa_lockout":
			sigs = append(sigs, store.Signal{Rule: RuleMFALockout, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary:    "利用者 " + attrs["user"] + " の多要素認証ロックアウト / MFA lock-out of user " + attrs["user"],
				SummaryMsg: msg("incident.summary.mfa-lockout", text(attrs["user"]))})
		case ev.GetControl() == policy.ControlAgent && ev.GetKind() == "events_dropped":
			sigs = append(sigs, store.Signal{Rule: RuleEventsLost, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary: fmt.Sprintf("証跡イベント %s 件を記録できず（%s） / %s events could not be recorded (%s)",
					attrs["count"], attrs["reason"], attrs["count"], attrs["reason"]),
				SummaryMsg: msg("incident.summary.events-dropped", text(attrs["count"]), text(attrs["reason"]))})
		case ev.GetControl() == policy.ControlAgent && ev.GetKind() == "spool_damaged":
			sigs = append(sigs, store.Signal{Rule: RuleEventsLost, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary: fmt.Sprintf("スプール破損、推定 %s 件を失った / spool damaged, about %s events lost (%s)",
					attrs["records_lost_estimate"], attrs["records_lost_estimate"], attrs["file"]),
				SummaryMsg: msg("incident.summary.spool-damaged", text(attrs["records_lost_estimate"]), text(attrs["file"]))})
		case ev.GetControl() == policy.ControlIsolation && ev.GetKind() == "finding" && attrs["severity"] == "violation":
			sigs = append(sigs, store.Signal{Rule: RuleTierReachable, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary:    "別の層に到達可能 / this terminal can reach another tier: " + attrs["detail"],
				SummaryMsg: msg("incident.summary.tier-reachable", text(attrs["detail"]))})
		case ev.GetControl() == policy.ControlMedia && ev.GetKind() == "still_writable":
			sigs = append(sigs, store.Signal{Rule: RuleMediaWritable, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary: fmt.Sprintf("外部記憶媒体 %s（%s）が再適用後も書込み可能（%s 回連続） / removable device %s (%s) still writable after re-applying (%s rounds): %s",
					attrs["device"], attrs["serial"], attrs["rounds"], attrs["device"], attrs["serial"], attrs["rounds"], attrs["problem"]),
				SummaryMsg: msg("incident.summary.media-writable", text(attrs["device"]), text(attrs["serial"]), text(attrs["rounds"]), text(attrs["problem"]))})
		case driftKinds[ev.GetKind()]:
			sigs = append(sigs, store.Signal{Rule: RulePolicyDrift, DeviceID: e.DeviceID, Episode: ref, At: at,
				Summary: fmt.Sprintf("%s: 端末上で設定が変更され再適用 / enforcement changed on the terminal and was re-applied (%s%s)",
					ev.GetControl(), ev.GetKind(), reapplied(attrs)),
				SummaryMsg: driftMsg(ev.GetControl(), ev.GetKind(), attrs)})
		}
	}
	return terms, sigs, nil
}
