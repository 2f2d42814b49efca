package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// unit is how a key's values are written and compared.
type unit int

const (
	count    unit = iota // deploys per week: compared by difference
	seconds              // durations: compared in percent
	fraction             // change failure rate: compared in percentage points
)

// limit is a boundary between two DORA bands, drawn on the key's chart.
type limit struct {
	At    float64
	Label string
}

// key is one of the four keys: how to read, phrase and judge it.
type key struct {
	ID           string
	Name         string
	Chart        string // the chart's title
	Spark        string // the sparkline's label
	Unit         unit
	HigherBetter bool
	// Limits are the DORA bands' boundaries in the unit of value, drawn on the
	// charts as guides. The band of each week is the server's (DoraBands).
	Limits []limit
	value  func(schema.DoraWeek) (float64, bool)
	// p90 is the second figure drawn on duration charts.
	p90    func(schema.DoraWeek) (float64, bool)
	phrase func(schema.DoraWeek) (value, missing string)
	band   func(schema.DoraWeek) string
}

// keys are the four keys in the order DORA lists them. Their limits are the
// ones the server places weeks in bands by (schema/dora_bands.go).
var keys = []key{
	{
		ID: "deploy_frequency", Name: "Deploy frequency", Chart: "Deploys per week", Spark: "Deploys per week", Unit: count, HigherBetter: true,
		Limits: atLeast(schema.EliteDeploysPerWeek, schema.HighDeploysPerWeek),
		value:  func(w schema.DoraWeek) (float64, bool) { return float64(w.DeployFrequency), true },
		phrase: func(w schema.DoraWeek) (string, string) {
			s := plural(w.DeployFrequency, "deploy", "deploys")
			if w.DeployFrequency > 0 {
				s += " on " + plural(w.DeployDays, "day", "days")
			}
			switch failed := w.Deploys - w.DeployFrequency; {
			case failed > 0 && w.DeployFrequency == 0:
				s += fmt.Sprintf(" (%d failed to deploy)", failed)
			case failed > 0:
				s += fmt.Sprintf(" (%d more failed to deploy)", failed)
			}
			return s, ""
		},
		band: func(w schema.DoraWeek) string { return w.Bands.DeployFrequency },
	},
	{
		ID: "lead_time", Name: "Lead time for changes", Chart: "Lead time, median and p90", Spark: "Lead time, median", Unit: seconds,
		Limits: below(schema.EliteLeadTime, schema.HighLeadTime, schema.MediumLeadTime),
		value:  func(w schema.DoraWeek) (float64, bool) { return get(w.LeadTimeS.P50) },
		p90:    func(w schema.DoraWeek) (float64, bool) { return get(w.LeadTimeS.P90) },
		phrase: func(w schema.DoraWeek) (string, string) {
			if w.LeadTimeS.P50 == nil {
				if w.DeployFrequency == 0 {
					return "–", "no deploys"
				}
				return "–", "no commits deployed"
			}
			s := "median " + duration(*w.LeadTimeS.P50) + p90Text(w.LeadTimeS.P90)
			if w.Commits > 0 {
				s += ", " + plural(w.Commits, "commit", "commits")
			}
			return s, ""
		},
		band: func(w schema.DoraWeek) string { return w.Bands.LeadTime },
	},
	{
		ID: "change_failure_rate", Name: "Change failure rate", Chart: "Change failure rate", Spark: "Change failure rate", Unit: fraction,
		Limits: []limit{
			{schema.EliteChangeFailureRate, "elite: ≤ " + percent(schema.EliteChangeFailureRate)},
			{schema.HighChangeFailureRate, "high: ≤ " + percent(schema.HighChangeFailureRate)},
			{schema.MediumChangeFailureRate, "medium: ≤ " + percent(schema.MediumChangeFailureRate)},
		},
		value: func(w schema.DoraWeek) (float64, bool) { return get(w.ChangeFailureRate) },
		phrase: func(w schema.DoraWeek) (string, string) {
			if w.ChangeFailureRate == nil {
				return "–", "no deploys"
			}
			return fmt.Sprintf("%d of %s failed (%s)", w.Failures, plural(w.DeployFrequency, "deploy", "deploys"), percent(*w.ChangeFailureRate)), ""
		},
		band: func(w schema.DoraWeek) string { return w.Bands.ChangeFailureRate },
	},
	{
		ID: "mttr", Name: "Time to restore", Chart: "Time to restore, median and p90", Spark: "Time to restore, median", Unit: seconds,
		Limits: below(schema.EliteTimeToRestore, schema.HighTimeToRestore, schema.MediumTimeToRestore),
		value:  func(w schema.DoraWeek) (float64, bool) { return get(w.MTTRS.P50) },
		p90:    func(w schema.DoraWeek) (float64, bool) { return get(w.MTTRS.P90) },
		phrase: func(w schema.DoraWeek) (string, string) {
			opened := plural(w.Incidents, "incident", "incidents") + " opened"
			if w.MTTRS.P50 == nil {
				if w.Incidents == 0 {
					return "–", "no incidents"
				}
				return "–", opened + ", none resolved"
			}
			return "restored in " + duration(*w.MTTRS.P50) + " median" + p90Text(w.MTTRS.P90) + ", " + opened, ""
		},
		band: func(w schema.DoraWeek) string { return w.Bands.MTTR },
	},
}

// atLeast are the deploy frequency limits: elite and high from so many a week.
func atLeast(elite, high int) []limit {
	return []limit{
		{float64(elite), "elite: " + strconv.Itoa(elite) + "+/week"},
		{float64(high), "high: " + strconv.Itoa(high) + "+/week"},
	}
}

// below are a duration's limits: elite, high and medium below each.
func below(elite, high, medium time.Duration) []limit {
	return []limit{
		{elite.Seconds(), "elite: < " + duration(elite.Seconds())},
		{high.Seconds(), "high: < " + duration(high.Seconds())},
		{medium.Seconds(), "medium: < " + duration(medium.Seconds())},
	}
}

func get(p *float64) (float64, bool) {
	if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
		return 0, false
	}
	return *p, true
}

func p90Text(p *float64) string {
	if p == nil {
		return ""
	}
	return " (p90 " + duration(*p) + ")"
}

// compare is the headline week's value against the week before's.
func (k key) compare(cur float64, ok bool, prev schema.DoraWeek) delta {
	ref, refOK := k.value(prev)
	if !refOK {
		return delta{Text: "–"}
	}
	return k.compareTo(cur, ok, ref, "was ")
}

// compareTo is the headline week's value against ref, which the text names
// with refName ("was ", "median ").
func (k key) compareTo(cur float64, ok bool, ref float64, refName string) delta {
	if !ok {
		return delta{Text: "–"}
	}
	var change, was string
	var same bool
	switch k.Unit {
	case count:
		d := cur - ref
		same = math.Abs(d) < 0.05
		change, was = signed(d, 1, ""), decimal(ref, 1)
	case seconds:
		was = duration(ref)
		if ref == 0 {
			same = cur == 0
			change = "+" + duration(cur)
		} else {
			pct := (cur - ref) / ref * 100
			same = math.Abs(pct) < 0.5
			change = signed(pct, 0, "%")
		}
	case fraction:
		pts := (cur - ref) * 100
		same = math.Abs(pts) < 0.05
		change, was = signed(pts, 1, " pts"), percent(ref)
	}
	was = refName + was
	if same {
		return delta{Arrow: "=", Text: "same (" + was + ")", Tone: "same"}
	}
	d := delta{Arrow: "▼", Text: change + " (" + was + ")", Tone: "worse"}
	if cur > ref {
		d.Arrow = "▲"
	}
	if (cur > ref) == k.HigherBetter {
		d.Tone = "better"
	}
	return d
}

// Label is the delta as the headline writes it: "▲ +3 (9), better".
func (d delta) Label() string {
	if d.Arrow == "" {
		return d.Text
	}
	s := d.Arrow + " " + d.Text
	if d.Tone == "better" || d.Tone == "worse" {
		s += ", " + d.Tone
	}
	return s
}

// signed is v with its sign (a real minus), at most prec decimals, then suffix.
func signed(v float64, prec int, suffix string) string {
	s := decimal(math.Abs(v), prec) + suffix
	if v < 0 {
		return "−" + s
	}
	return "+" + s
}

// decimal is v with at most prec decimals and no trailing zeros.
func decimal(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// percent is a fraction as a percentage: 0.1667 → "16.7%".
func percent(f float64) string { return decimal(f*100, 1) + "%" }

// duration is seconds the way people say it: 35s, 4m 17s, 42m, 3h 10m, 1d 2h.
func duration(s float64) string {
	switch {
	case s < 59.5:
		return fmt.Sprintf("%.0fs", s)
	case s < 599.5:
		secs := int(math.Round(s))
		return joinUnits(secs/60, "m", secs%60, "s")
	}
	mins := int(math.Round(s / 60))
	if mins < 60 {
		return fmt.Sprintf("%dm", mins)
	}
	if mins < 24*60 {
		return joinUnits(mins/60, "h", mins%60, "m")
	}
	hours := int(math.Round(s / 3600))
	return joinUnits(hours/24, "d", hours%24, "h")
}

func joinUnits(a int, ua string, b int, ub string) string {
	if b == 0 {
		return strconv.Itoa(a) + ua
	}
	return strconv.Itoa(a) + ua + " " + strconv.Itoa(b) + ub
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// short is a value on a chart's axis or in a table cell, in the key's unit.
func (k key) short(v float64) string {
	switch k.Unit {
	case seconds:
		return duration(v)
	case fraction:
		return percent(v)
	}
	return decimal(v, 1)
}
