package web

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/i18n"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/compliance"
	"github.com/mamori-dev/mamori/server/store"
)

// chartDays is how far back the fleet chart goes.
const chartDays = 90

// fleetExtra is what the fleet page shows beyond the counts: counts by
// control and by device group, and the 90-day chart.
type fleetExtra struct {
	Controls []controlRow
	States   []stateCol
	Groups   []groupRow
	Chart    chart
}

type stateCol struct {
	Class, Name string
	State       mamoriv1.ControlState
}

type controlRow struct {
	ID      string // the control's identifier; Control is its name in the reader's language
	Control string
	Clause  string
	Cells   []int64 // by States
}

type groupRow struct {
	Group string
	store.FleetCounts
}

// controlStates are the columns of the by-control table.
var controlStates = []mamoriv1.ControlState{
	mamoriv1.ControlState_CONTROL_STATE_ENFORCED, mamoriv1.ControlState_CONTROL_STATE_MONITORING,
	mamoriv1.ControlState_CONTROL_STATE_DEGRADED, mamoriv1.ControlState_CONTROL_STATE_FAILED,
	mamoriv1.ControlState_CONTROL_STATE_NOT_APPLICABLE,
}

func (c *Console) fleetExtra(ctx context.Context, p *i18n.Printer, pol *mamoriv1.Policy, now time.Time) (*fleetExtra, error) {
	x := &fleetExtra{}
	for _, s := range controlStates {
		x.States = append(x.States, stateCol{Class: strings.ToLower(compliance.StateName(s)), Name: stateName(p, s), State: s})
	}
	counts, err := c.st.CountByControl(ctx)
	if err != nil {
		return nil, err
	}
	byControl := map[string]map[mamoriv1.ControlState]int64{}
	for _, cc := range counts {
		if byControl[cc.Control] == nil {
			byControl[cc.Control] = map[mamoriv1.ControlState]int64{}
		}
		byControl[cc.Control][cc.State] += cc.N
	}
	names := make([]string, 0, len(byControl))
	for n := range byControl {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := controlRow{Control: visible(controlName(p, n)), ID: n, Clause: clauseOf(n).Clause}
		for _, s := range controlStates {
			r.Cells = append(r.Cells, byControl[n][s])
		}
		x.Controls = append(x.Controls, r)
	}
	groups, err := c.st.CountFleetByGroup(ctx, compliance.OfflineCut(pol, now))
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		x.Groups = append(x.Groups, groupRow{Group: visible(g.Group), FleetCounts: g.FleetCounts})
	}
	to := now.In(c.cfg.Location)
	from := to.AddDate(0, 0, -(chartDays - 1))
	snaps, err := c.st.DailySnapshots(ctx, from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		return nil, err
	}
	x.Chart = buildChart(p, snaps, from, chartDays)
	return x, nil
}

// chart is a server-side SVG: one column per day, stacked by share of
// the fleet (compliant, non-compliant, offline, other), no JavaScript.
type chart struct {
	W, H, Left, Top, PlotW, PlotH int
	Bars                          []chartBar
	YTicks                        []chartTick
	XTicks                        []chartTick
	Legend                        []chartLegend
	Title                         string
	Empty                         bool
	Days                          int
}

type chartBar struct {
	X, W     string
	Segments []chartSeg
	Title    string
}

type chartSeg struct {
	Class, Y, H string
}

type chartTick struct {
	Pos   string
	Label string
}

type chartLegend struct {
	Class, Name string
	X           int
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

func buildChart(p *i18n.Printer, snaps []store.DailySnapshot, from time.Time, days int) chart {
	ch := chart{W: 760, H: 260, Left: 44, Top: 12, PlotW: 700, PlotH: 200, Days: days, Title: p.Sprintf("console.chart.title", days)}
	byDay := map[string]store.DailySnapshot{}
	for _, s := range snaps {
		byDay[s.Day] = s
	}
	ch.Empty = len(snaps) == 0
	colW := float64(ch.PlotW) / float64(days)
	for pct := 0; pct <= 100; pct += 25 {
		ch.YTicks = append(ch.YTicks, chartTick{Pos: f1(float64(ch.Top) + float64(ch.PlotH)*(1-float64(pct)/100)), Label: fmt.Sprintf("%d%%", pct)})
	}
	for i := range days {
		day := from.AddDate(0, 0, i)
		key := day.Format(time.DateOnly)
		if i%15 == 0 || i == days-1 {
			ch.XTicks = append(ch.XTicks, chartTick{Pos: f1(float64(ch.Left) + colW*float64(i) + colW/2), Label: day.Format("01-02")})
		}
		s, ok := byDay[key]
		if !ok || s.Total == 0 {
			continue
		}
		bar := chartBar{X: f1(float64(ch.Left) + colW*float64(i) + 0.5), W: f1(max(colW-1, 1)),
			Title: p.Sprintf("console.chart.bar", key, s.Compliant, s.Noncompliant, s.Offline, s.Total)}
		y := float64(ch.Top + ch.PlotH)
		other := s.Total - s.Compliant - s.Noncompliant - s.Offline
		for _, seg := range []struct {
			class string
			n     int64
		}{{"compliant", s.Compliant}, {"noncompliant", s.Noncompliant}, {"offline", s.Offline}, {"other", other}} {
			if seg.n <= 0 {
				continue
			}
			h := float64(ch.PlotH) * float64(seg.n) / float64(s.Total)
			y -= h
			bar.Segments = append(bar.Segments, chartSeg{Class: seg.class, Y: f1(y), H: f1(h)})
		}
		ch.Bars = append(ch.Bars, bar)
	}
	x := ch.Left
	for _, l := range []struct{ class, id string }{{"compliant", "console.state.compliant"}, {"noncompliant", "console.state.noncompliant"},
		{"offline", "console.state.offline"}, {"other", "console.chart.other"}} {
		ch.Legend = append(ch.Legend, chartLegend{Class: l.class, Name: p.Sprintf(i18n.ID(l.id)), X: x})
		x += 150
	}
	return ch
}
