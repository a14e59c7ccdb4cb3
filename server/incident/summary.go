package incident

import (
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	"github.com/mamori-dev/mamori/internal/textsafe"
	"github.com/mamori-dev/mamori/server/store"
)

// Summary is an incident's summary in p's language: its catalogue message
// (store.IncidentMsg) with times formatted by when and durations by span,
// text arguments made one line; the stored text for an incident opened
// before summaries were stored as messages, or whose message the catalogue
// does not know.
func Summary(p *i18n.Printer, in store.Incident, when func(time.Time) string, span func(time.Duration) string) string {
	m := in.SummaryMsg
	if m.ID == "" {
		return in.Summary
	}
	args := make([]string, len(m.Args))
	for i, a := range m.Args {
		kind, v, _ := strings.Cut(a, ":")
		switch kind {
		case "t":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return in.Summary
			}
			args[i] = when(t)
		case "d":
			d, err := time.ParseDuration(v)
			if err != nil {
				return in.Summary
			}
			args[i] = span(d)
		case "s":
			if v == "" {
				v = "-"
			}
			args[i] = textsafe.OneLine(v)
		default:
			return in.Summary
		}
	}
	if s, ok := p.IncidentSummary(i18n.ID(m.ID), args); ok {
		return s
	}
	return in.Summary
}

// jstZone is the zone of the Japanese half of a notification.
var jstZone = time.FixedZone("JST", 9*3600)

// summaryBoth is the summary in Japanese (times in JST) and English (UTC),
// for a notification that goes to people of either language.
func summaryBoth(in store.Incident) string {
	if in.SummaryMsg.ID == "" {
		return in.Summary
	}
	ja := Summary(i18n.NewPrinter(i18n.Japanese), in, func(t time.Time) string { return t.In(jstZone).Format("2006-01-02 15:04 MST") }, DurationText)
	en := Summary(i18n.NewPrinter(i18n.English), in, func(t time.Time) string { return t.UTC().Format(time.RFC3339) }, DurationText)
	return ja + " / " + en
}

// DurationText is a duration as Go writes it (and parses it back),
// without zero units ("10m", not "10m0s"; "1h30m").
func DurationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
