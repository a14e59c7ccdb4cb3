// Package wire holds the limits the server puts on what an agent sends,
// and makes what an agent sends fit them. Both sides use the same numbers:
// the server refuses a report over a limit (InvalidArgument), and an agent
// that sent such a report again and again would never deliver anything
// behind it — so the agent clamps first, saying what it cut.
package wire

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Limits on a report's content (server/api validates them).
const (
	MaxMapEntries  = 64
	MaxShortString = 256  // names, hostnames, kinds, versions
	MaxLongString  = 4096 // details, evidence and attribute values
	// A status's detail_id is a short string; its detail_args are at most
	// MaxDetailArgs long strings (no detail message takes more).
	MaxDetailArgs = 8
	// MaxDetailParts bounds ControlStatus.detail_parts: the problems one
	// detail lists as messages (more are listed in English only).
	MaxDetailParts = 8
)

// TruncatedKey is the attribute (or evidence key) that says how many
// entries or bytes a clamp cut.
const TruncatedKey = "mamori_truncated"

// Short makes s valid UTF-8 of at most MaxShortString bytes.
func Short(s string) string { return Clamp(s, MaxShortString) }

// Long makes s valid UTF-8 of at most MaxLongString bytes.
func Long(s string) string { return Clamp(s, MaxLongString) }

// Clamp makes s valid UTF-8 of at most max bytes, cut on a character
// boundary and marked with "…" when it was longer.
func Clamp(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	const mark = "…"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Map makes m fit: keys Short, values Long, at most MaxMapEntries entries
// (the first by key order are kept; TruncatedKey counts what was cut, or
// says which strings were shortened). It returns m itself when nothing
// needs changing.
func Map(m map[string]string) map[string]string {
	ok := len(m) <= MaxMapEntries
	for k, v := range m {
		if k == "" || len(k) > MaxShortString || len(v) > MaxLongString || !utf8.ValidString(k) || !utf8.ValidString(v) {
			ok = false
			break
		}
	}
	if ok {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, min(len(m), MaxMapEntries))
	shortened, dropped := 0, 0
	for _, k := range keys {
		if len(out) >= MaxMapEntries-1 {
			dropped++
			continue
		}
		ck, cv := Short(k), Long(m[k])
		if ck == "" {
			ck = "(empty)"
		}
		if ck != k || cv != m[k] {
			shortened++
		}
		if _, taken := out[ck]; taken {
			dropped++
			continue
		}
		out[ck] = cv
	}
	out[TruncatedKey] = "entries_dropped=" + strconv.Itoa(dropped) + " shortened=" + strconv.Itoa(shortened)
	return out
}

// Event makes an event's strings and attributes fit the server's limits.
func Event(e *mamoriv1.Event) {
	e.Control, e.Kind = Short(e.Control), Short(e.Kind)
	e.Attributes = Map(e.Attributes)
}

// Status makes a control status's detail and evidence fit. A detail_id too
// long or with too many detail_args is dropped with its arguments and
// parts, and parts that do not fit are dropped together: the console then
// shows the English detail, which is always there.
func Status(s *mamoriv1.ControlStatus) {
	s.Control = Short(s.Control)
	s.Detail = Long(s.Detail)
	if !detailFits(s.DetailId, s.DetailArgs) || s.DetailId == "" {
		s.DetailId, s.DetailArgs, s.DetailParts = "", nil, nil
	}
	if len(s.DetailParts) > MaxDetailParts || slices.ContainsFunc(s.DetailParts, func(p *mamoriv1.DetailPart) bool {
		return !detailFits(p.GetId(), p.GetArgs())
	}) {
		s.DetailParts = nil
	}
	clip := func(args []string) {
		for i, a := range args {
			args[i] = Long(a)
		}
	}
	clip(s.DetailArgs)
	for _, p := range s.DetailParts {
		clip(p.Args)
	}
	s.Evidence = Map(s.Evidence)
}

func detailFits(id string, args []string) bool {
	return len(id) <= MaxShortString && utf8.ValidString(id) && len(args) <= MaxDetailArgs
}
