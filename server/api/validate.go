package api

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/mamori-dev/mamori/internal/auditsig"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/internal/wire"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Limits on what an agent may send. gRPC already refuses a message over
// MaxMessageBytes before it is decoded; these bound what a decoded message
// may hold, so one terminal cannot fill the database or a page.
const (
	MaxMessageBytes   = 4 << 20
	MaxCSRBytes       = 16 << 10
	MaxStatuses       = 64
	MaxEvents         = 1000
	MaxMapEntries     = wire.MaxMapEntries
	MaxShortString    = wire.MaxShortString // names, hostnames, kinds, versions
	MaxLongString     = wire.MaxLongString  // details, evidence and attribute values
	MaxDetailArgs     = wire.MaxDetailArgs
	MaxDetailParts    = wire.MaxDetailParts
	MaxTokenLength    = 128
	maxPageSize       = 1000
	defaultPageSize   = 100
	defaultRecentEvts = 20
)

// validateFacts checks device facts from an agent.
func validateFacts(f *mamoriv1.DeviceFacts, needMachineID bool) error {
	if f == nil {
		return invalidArg("facts are missing")
	}
	fields := []struct {
		name, v string
	}{
		{"hostname", f.Hostname}, {"os", f.Os}, {"os_version", f.OsVersion}, {"kernel", f.Kernel},
		{"agent_version", f.AgentVersion}, {"machine_id", f.MachineId}, {"key_storage", f.KeyStorage},
		{"serial_number", f.SerialNumber},
	}
	for _, fl := range fields {
		if err := checkString("facts."+fl.name, fl.v, MaxShortString); err != nil {
			return err
		}
	}
	if f.Hostname == "" {
		return invalidArg("facts.hostname is empty")
	}
	if needMachineID && len(f.MachineId) < 8 {
		return invalidArg("facts.machine_id is missing or too short")
	}
	if needMachineID {
		// Enrolment: the names a device is known by are refused, as
		// group names are, when they hold a control or bidi formatting
		// character (a NUL, a line break, an override that reverses
		// what a page shows). Someone is at the terminal to fix it.
		for _, fl := range []struct{ name, v string }{{"hostname", f.Hostname}, {"machine_id", f.MachineId}} {
			if strings.IndexFunc(fl.v, textsafe.IsHidden) >= 0 {
				return invalidArg("facts.%s contains a control or bidirectional formatting character: give the terminal a plain name", fl.name)
			}
		}
	}
	return nil
}

// neutraliseFacts replaces control and bidi formatting characters in the
// descriptive facts of a report with spaces (textsafe.OneLine): a report
// is never refused for them (nobody is at the terminal, and its events
// must flow), and no page, log or export shows them. The machine ID is
// left as sent: it must equal the enrolled one (store.ErrWrongDevice).
func neutraliseFacts(f *mamoriv1.DeviceFacts) {
	if f == nil {
		return
	}
	for _, p := range []*string{&f.Hostname, &f.Os, &f.OsVersion, &f.Kernel, &f.AgentVersion, &f.KeyStorage, &f.SerialNumber} {
		*p = textsafe.OneLine(*p)
	}
}

// validateReport checks a report before anything is written.
func validateReport(r *mamoriv1.ReportRequest) error {
	if r.Facts != nil {
		if err := validateFacts(r.Facts, false); err != nil {
			return err
		}
	}
	if err := checkString("policy_digest", r.PolicyDigest, 128); err != nil {
		return err
	}
	if err := checkDigests(r.StateDigest, r.BaseDigest); err != nil {
		return err
	}
	if len(r.Statuses) > MaxStatuses {
		return invalidArg("%d control statuses; at most %d", len(r.Statuses), MaxStatuses)
	}
	if len(r.Events) > MaxEvents {
		return invalidArg("%d events; at most %d per report", len(r.Events), MaxEvents)
	}
	if n := len(r.HpkePublicKey); n != 0 && n != hpkePublicKeyLen {
		return invalidArg("hpke_public_key is %d bytes; want %d (X25519)", n, hpkePublicKeyLen)
	}
	if err := checkString("mfa_bundle_version", r.MfaBundleVersion, MaxShortString); err != nil {
		return err
	}
	if cp := r.WitnessedCheckpoint; cp != nil {
		if err := auditsig.WellFormed(cp.Seq, cp.Head, cp.Signature); err != nil {
			return invalidArg("witnessed_checkpoint: %v", err)
		}
		if len(r.BaseDigest) != 0 {
			return invalidArg("witnessed_checkpoint goes with full reports only (this one has a base_digest)")
		}
	}
	seen := make(map[string]bool, len(r.Statuses))
	for i, s := range r.Statuses {
		if s == nil {
			return invalidArg("statuses[%d] is empty", i)
		}
		if s.Control == "" {
			return invalidArg("statuses[%d].control is empty", i)
		}
		if seen[s.Control] {
			return invalidArg("control %q reported twice", s.Control)
		}
		seen[s.Control] = true
		if err := checkString("control", s.Control, MaxShortString); err != nil {
			return err
		}
		if _, ok := mamoriv1.ControlState_name[int32(s.State)]; !ok || s.State == mamoriv1.ControlState_CONTROL_STATE_UNSPECIFIED {
			return invalidArg("control %s: state %d is not a known state", s.Control, s.State)
		}
		if _, ok := mamoriv1.Mode_name[int32(s.Mode)]; !ok {
			return invalidArg("control %s: mode %d is not a known mode", s.Control, s.Mode)
		}
		if err := checkString("control "+s.Control+" detail", s.Detail, MaxLongString); err != nil {
			return err
		}
		if err := checkDetailMessage("control "+s.Control+" detail", s.DetailId, s.DetailArgs); err != nil {
			return err
		}
		if len(s.DetailParts) > MaxDetailParts {
			return invalidArg("control %s: %d detail_parts; at most %d", s.Control, len(s.DetailParts), MaxDetailParts)
		}
		for i, p := range s.DetailParts {
			if err := checkDetailMessage(fmt.Sprintf("control %s detail_parts[%d]", s.Control, i), p.GetId(), p.GetArgs()); err != nil {
				return err
			}
		}
		if err := checkMap("control "+s.Control+" evidence", s.Evidence); err != nil {
			return err
		}
		if s.ObservedAt != nil {
			if err := s.ObservedAt.CheckValid(); err != nil {
				return invalidArg("control %s: observed_at: %v", s.Control, err)
			}
		}
	}
	for i, e := range r.Events {
		if e == nil {
			return invalidArg("events[%d] is empty", i)
		}
		if _, err := uuid.Parse(e.Id); err != nil || len(e.Id) != 36 {
			return invalidArg("events[%d].id %q is not a UUID", i, truncate(e.Id))
		}
		if e.Time == nil || e.Time.CheckValid() != nil {
			return invalidArg("event %s: time is missing or invalid", e.Id)
		}
		if e.Kind == "" {
			return invalidArg("event %s: kind is empty", e.Id)
		}
		if err := checkString("event "+e.Id+" control", e.Control, MaxShortString); err != nil {
			return err
		}
		if err := checkString("event "+e.Id+" kind", e.Kind, MaxShortString); err != nil {
			return err
		}
		if err := checkMap("event "+e.Id+" attributes", e.Attributes); err != nil {
			return err
		}
	}
	if r.SentAt != nil && r.SentAt.CheckValid() != nil {
		return invalidArg("sent_at is invalid")
	}
	return nil
}

func checkString(field, v string, max int) error {
	if len(v) > max {
		return invalidArg("%s is %d bytes; at most %d", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return invalidArg("%s is not valid UTF-8", field)
	}
	return nil
}

func checkMap(field string, m map[string]string) error {
	if len(m) > MaxMapEntries {
		return invalidArg("%s has %d entries; at most %d", field, len(m), MaxMapEntries)
	}
	for k, v := range m {
		if k == "" {
			return invalidArg("%s has an empty key", field)
		}
		if err := checkString(field+" key", k, MaxShortString); err != nil {
			return err
		}
		if err := checkString(field+" "+truncate(k), v, MaxLongString); err != nil {
			return err
		}
	}
	return nil
}

// truncate keeps hostile values short in error messages.
func truncate(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// checkDetailMessage checks a detail message's ID and arguments
// (ControlStatus.detail_id/detail_args, or one of its detail_parts).
func checkDetailMessage(where, id string, args []string) error {
	if err := checkString(where+" id", id, MaxShortString); err != nil {
		return err
	}
	if len(args) > MaxDetailArgs {
		return invalidArg("%s: %d arguments; at most %d", where, len(args), MaxDetailArgs)
	}
	for _, a := range args {
		if err := checkString(where+" argument", a, MaxLongString); err != nil {
			return err
		}
	}
	return nil
}

// checkDigests checks a report's differential fields (issue #20): each
// empty or a SHA-256 (32 bytes).
func checkDigests(state, base []byte) error {
	for _, f := range []struct {
		name string
		v    []byte
	}{{"state_digest", state}, {"base_digest", base}} {
		if len(f.v) != 0 && len(f.v) != sha256.Size {
			return invalidArg("%s is %d bytes: want a SHA-256 (%d bytes), or none", f.name, len(f.v), sha256.Size)
		}
	}
	return nil
}

// reportDigests returns a report's state and base digests as the store
// keeps them (hex); a no-change report (a base and no state) leads to its
// base.
func reportDigests(r *mamoriv1.ReportRequest) (state, base string) {
	base = hex.EncodeToString(r.BaseDigest)
	if len(r.StateDigest) == 0 {
		return base, base
	}
	return hex.EncodeToString(r.StateDigest), base
}
